package main

import (
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// watchedEvents parses the output of `ambassador watch --json`.
func watchedEvents(t *testing.T, p *lab.Proc) []mesh.Event {
	t.Helper()
	var out []mesh.Event
	for _, line := range strings.Split(p.Log(), "\n") {
		var e mesh.Event
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(evs []mesh.Event, typ, node, service string) bool {
	for _, e := range evs {
		if e.Type == typ && e.Node == node && (service == "" || e.Service == service) {
			return true
		}
	}
	return false
}

// TestLabObserve runs the built binary on three hosts: `ambassador watch
// --json` on b follows c joining, c's service appearing and c failing
// (SIGKILL); `ambassador connections` on b lists an open connection to a's
// service; b's /metrics, fetched with curl and parsed, counts it.
func TestLabObserve(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "curl", "bash")
	a, b, c := l.AddHost("a"), l.AddHost("b"), l.AddHost("c")
	startHelper(t, a, "web-service", "serve-sha", "127.0.0.1:12400")
	startHelper(t, c, "cache-service", "serve-sha", "127.0.0.1:12401")
	startNode(a, "--announce", "web:8080=12400")
	startNode(b)
	lab.WaitFor(t, 30*time.Second, "web on b", func() bool { return len(hostsOf(t, b, "web")) == 1 })
	// --recent: what happened before watch connected is replayed, so c's
	// join cannot slip past it.
	watch := b.Start("watch", binary, "watch", "--json", "--recent")

	nodeC := startNode(c, "--announce", "cache:6380=12401")
	var cName string
	lab.WaitFor(t, 30*time.Second, "c joined and its service seen by watch on b", func() bool {
		for _, m := range members(t, b).Members {
			if m.Addr == c.Addr {
				cName = m.Name
			}
		}
		evs := watchedEvents(t, watch)
		return cName != "" && hasEvent(evs, mesh.EventMemberJoined, cName, "") && hasEvent(evs, mesh.EventServiceAppeared, cName, "cache")
	})

	// An idle node runs with GOMAXPROCS 1 once its start is over
	// (maxprocs.go); a connection through it raises GOMAXPROCS again
	// within a poll.
	governed := os.Getenv("GOMAXPROCS") == "" && runtime.NumCPU() > 1
	if governed {
		lab.WaitFor(t, startGCWindow+3*procsPoll, "b idle lowers GOMAXPROCS to 1", func() bool {
			return gomaxprocsOf(t, b) == 1
		})
	}
	// And collects at idleGOGC, unless GOGC is the user's.
	tunedGC := os.Getenv("GOGC") == ""
	if tunedGC {
		lab.WaitFor(t, startGCWindow+3*procsPoll, "b idle collects at idleGOGC", func() bool {
			return gaugeOf(t, b, "go_gc_gogc_percent") == idleGOGC
		})
	}

	// An open connection from b to a's web, with bytes sent.
	b.Start("trickle", "bash", "-c",
		`exec 3<>/dev/tcp/127.0.0.1/8080; for i in $(seq 300); do head -c 4096 /dev/zero >&3 || exit 1; sleep 0.1; done`)
	var cs mesh.Connections
	lab.WaitFor(t, 10*time.Second, "the connection in `ambassador connections --json` on b", func() bool {
		out, err := b.Run(5*time.Second, binary, "connections", "--json", "--socket", socketOf(b))
		if err != nil || json.Unmarshal([]byte(out), &cs) != nil {
			return false
		}
		return len(cs.Connections) == 1 && cs.Connections[0].BytesIn > 0
	})
	if conn := cs.Connections[0]; conn.Service != "web" || conn.Backend != a.Addr+":7947" {
		t.Errorf("connection %+v: want web through a's data port %s:7947", conn, a.Addr)
	}
	table, err := b.Run(5*time.Second, binary, "connections", "--socket", socketOf(b))
	if err != nil || !strings.HasPrefix(table, "SERVICE  INSTANCE") || !strings.Contains(table, "web") || strings.Contains(table, "\x1b[") {
		t.Errorf("connections table (not a terminal: plain): %v\n%q", err, table)
	}

	out, err := b.Run(5*time.Second, "curl", "-sf", "http://127.0.0.1:7948/metrics")
	if err != nil {
		t.Fatalf("curl /metrics on b: %v %s", err, out)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("parse b's /metrics: %v", err)
	}
	get := func(name string, labels map[string]string) float64 {
		for _, m := range fams[name].GetMetric() {
			match := len(m.GetLabel()) == len(labels)
			for _, lp := range m.GetLabel() {
				match = match && labels[lp.GetName()] == lp.GetValue()
			}
			if match {
				switch {
				case m.Counter != nil:
					return m.GetCounter().GetValue()
				case m.Gauge != nil:
					return m.GetGauge().GetValue()
				case m.Histogram != nil:
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		t.Errorf("b: no %s%v in /metrics", name, labels)
		return -1
	}
	web := map[string]string{"service": "web"}
	if v := get("ambassador_connections_active", web); v != 1 {
		t.Errorf("b: ambassador_connections_active{service=web} = %v, want 1", v)
	}
	if v := get("ambassador_connections_total", web); v < 1 {
		t.Errorf("b: ambassador_connections_total{service=web} = %v, want >= 1", v)
	}
	if v := get("ambassador_upstream_connect_seconds", web); v < 1 {
		t.Errorf("b: ambassador_upstream_connect_seconds{service=web} count = %v, want >= 1", v)
	}
	if v := get("ambassador_bytes_total", map[string]string{"service": "web", "direction": "in"}); v <= 0 {
		t.Errorf("b: ambassador_bytes_total{service=web,direction=in} = %v, want > 0 while the connection runs", v)
	}
	if v := get("ambassador_members", map[string]string{"state": "alive"}); v != 3 {
		t.Errorf("b: ambassador_members{state=alive} = %v, want 3", v)
	}
	if v := get("ambassador_service_instances", map[string]string{"service": "cache", "health": "passing"}); v != 1 {
		t.Errorf("b: ambassador_service_instances{service=cache,health=passing} = %v, want 1", v)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("b: %s missing from /metrics", name)
		}
	}

	if governed {
		lab.WaitFor(t, 2*procsPoll, "b raises GOMAXPROCS while the connection is open", func() bool {
			return gomaxprocsOf(t, b) == float64(runtime.NumCPU())
		})
	}
	if tunedGC {
		lab.WaitFor(t, 2*procsPoll, "b collects at steadyGOGC while the connection is open", func() bool {
			return gaugeOf(t, b, "go_gc_gogc_percent") == steadyGOGC
		})
	}

	// c fails without a goodbye.
	if err := nodeC.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	lab.WaitFor(t, 20*time.Second, "c's failure in watch on b", func() bool {
		evs := watchedEvents(t, watch)
		return hasEvent(evs, mesh.EventMemberFailed, cName, "") && hasEvent(evs, mesh.EventServiceWithdrawn, cName, "cache")
	})
	t.Logf("FIGURE watch on b reported c failed %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
	out, _ = b.Run(5*time.Second, "curl", "-sf", "http://127.0.0.1:7948/metrics")
	if !strings.Contains(out, `ambassador_members{state="dead"} 1`) {
		t.Errorf("b: /metrics after c failed does not count one dead member:\n%s", grepLines(out, "ambassador_members"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// gomaxprocsOf scrapes h's /metrics for the node's GOMAXPROCS; -1 when it
// cannot.
func gomaxprocsOf(t *testing.T, h *lab.Host) float64 {
	t.Helper()
	return gaugeOf(t, h, "go_sched_gomaxprocs_threads")
}

// gaugeOf scrapes h's /metrics for the unlabelled gauge name; -1 when it
// cannot.
func gaugeOf(t *testing.T, h *lab.Host, name string) float64 {
	t.Helper()
	out, err := h.Run(5*time.Second, "curl", "-sf", "http://127.0.0.1:7948/metrics")
	if err != nil {
		return -1
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(out))
	if f := fams[name]; err == nil && f != nil && len(f.GetMetric()) == 1 {
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	return -1
}
