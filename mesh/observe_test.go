package mesh

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/internal/promtext"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ambassador-mesh/ambassador/health"
)

// TestEventHubDiff: each change between two observations gives one event
// of the right type, in a fixed order, and the first observation none.
func TestEventHubDiff(t *testing.T) {
	base := eventState{self: "me",
		members:   map[string]string{"me": "alive", "a": "alive", "b": "dead", "c": "alive"},
		instances: map[[2]string]bool{{"redis", "a"}: true, {"web", "c"}: true},
		health:    map[[2]string]string{{"redis", "me"}: "passing", {"pg", "a"}: "passing", {"db", "a"}: "failing", {"mq", "a"}: "failing"},
		listeners: map[string]string{"redis": "listening 127.0.0.1:6379", "web": "listening 127.0.0.1:80"},
	}
	next := eventState{self: "me",
		members:   map[string]string{"me": "alive", "a": "dead", "b": "alive", "c": "left", "d": "alive"},
		instances: map[[2]string]bool{{"redis", "a"}: true, {"redis", "d"}: true},
		// A peer's instance that is new (d's) is no health change; one
		// that went (a's mq) neither.
		health:    map[[2]string]string{{"redis", "me"}: "failing", {"pg", "a"}: "failing", {"db", "a"}: "passing", {"new", "d"}: "failing"},
		listeners: map[string]string{"redis": "listening 127.0.0.1:6379", "pg": "error port busy"},
	}
	var h eventHub
	sub := h.subscribe(0, false)
	defer h.unsubscribe(sub)
	h.observe(base)
	h.observe(base)
	h.observe(next)
	want := []string{
		"member-failed a", "member-back b", "member-left c", "member-joined d",
		"service-withdrawn c web", "service-appeared d redis",
		"health-changed a db passing", "health-changed a pg failing", "health-changed me redis failing",
		"listener-closed me web 127.0.0.1:80", "listener-busy me pg port busy",
	}
	for i, w := range want {
		select {
		case e := <-sub.ch:
			got := strings.TrimSpace(strings.Join([]string{e.Type, e.Node, e.Service, e.Detail}, " "))
			got = strings.Join(strings.Fields(got), " ")
			if got != w || e.Seq != uint64(i+1) {
				t.Fatalf("event %d: got %q seq %d, want %q seq %d", i, got, e.Seq, w, i+1)
			}
		default:
			t.Fatalf("event %d: none, want %q", i, w)
		}
	}
	select {
	case e := <-sub.ch:
		t.Fatalf("extra event %+v", e)
	default:
	}
}

// TestEventHubLagged: a subscriber that does not read skips events instead
// of blocking the publisher, and is told how many, in order, once it reads
// again; close ends its stream.
func TestEventHubLagged(t *testing.T) {
	var h eventHub
	slow := h.subscribe(0, false)
	h.observe(eventState{members: map[string]string{}})
	flip := func(i int) {
		h.observe(eventState{members: map[string]string{"n" + strconv.Itoa(i): "alive"}})
	}
	extra := 10
	for i := range subscriberBuffer + extra {
		flip(i)
	}
	// One event per flip: a member that is gone from the next state is
	// forgotten silently, the new one joins.
	if got := len(slow.ch); got != subscriberBuffer {
		t.Fatalf("queued %d, want the buffer's %d", got, subscriberBuffer)
	}
	for range subscriberBuffer {
		<-slow.ch
	}
	flip(-1)
	lag := <-slow.ch
	if lag.Type != EventLagged || lag.Detail != strconv.Itoa(extra) {
		t.Fatalf("got %+v, want a lagged event for %d", lag, extra)
	}
	if e := <-slow.ch; e.Type != EventMemberJoined || e.Node != "n-1" || e.Seq != lag.Seq+1 {
		t.Fatalf("after the lag (seq %d): got %+v", lag.Seq, e)
	}
	h.close()
	if _, ok := <-slow.ch; ok {
		t.Fatal("channel still open after close")
	}
	if _, ok := <-h.subscribe(0, false).ch; ok {
		t.Fatal("subscription after close is open")
	}
}

// TestEventHubReplay: a subscriber that names the last Seq it saw gets the
// kept events after it, and a lagged event for those no longer kept; one
// that names none gets only new events.
func TestEventHubReplay(t *testing.T) {
	var h eventHub
	h.observe(eventState{members: map[string]string{}})
	for i := range 200 {
		h.observe(eventState{members: map[string]string{"n" + strconv.Itoa(i): "alive"}})
	}
	for _, c := range []struct {
		after  uint64
		replay bool
		want   []string // type and seq of the first events, and how many in all
		n      int
	}{
		{0, false, nil, 0},
		{190, true, []string{"member-joined 191"}, 10},
		{200, true, nil, 0},
		{50, true, []string{"lagged 72 22", "member-joined 73"}, 1 + keepEvents},
		{0, true, []string{"lagged 72 72", "member-joined 73"}, 1 + keepEvents},
	} {
		s := h.subscribe(c.after, c.replay)
		got := drain(s.ch)
		h.unsubscribe(s)
		if len(got) != c.n {
			t.Errorf("after %d replay %v: %d events, want %d", c.after, c.replay, len(got), c.n)
			continue
		}
		for i, w := range c.want {
			g := strings.TrimSpace(fmt.Sprintf("%s %d %s", got[i].Type, got[i].Seq, got[i].Detail))
			if g != w {
				t.Errorf("after %d: event %d is %q, want %q", c.after, i, g, w)
			}
		}
	}
}

// watchEvents follows n's event stream in the background.
func watchEvents(t *testing.T, n *testNode) <-chan Event {
	t.Helper()
	ch := make(chan Event, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = Watch(ctx, n.cfg.HTTP, false, func(e Event) error { ch <- e; return nil })
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ch
}

// expectEvent waits for an event matching typ, node and service ("" for
// any), skipping others.
func expectEvent(t *testing.T, ch <-chan Event, timeout time.Duration, typ, node, service string) Event {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case e := <-ch:
			if e.Type == typ && (node == "" || e.Node == node) && (service == "" || e.Service == service) {
				return e
			}
			seen = append(seen, fmt.Sprintf("%s/%s/%s", e.Type, e.Node, e.Service))
		case <-deadline:
			t.Fatalf("no %s event for node %q service %q within %v; saw %v", typ, node, service, timeout, seen)
		}
	}
}

// TestEventStream follows node a's /v1/events through a join, a service
// that appears and a listener that opens, a health failure, and a peer
// that fails without leaving.
func TestEventStream(t *testing.T) {
	echo := echoServer(t)
	// b's own listener takes the service's port: a listens elsewhere.
	listenA := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	a := startTestNode(t, "a", func(c *Config) { c.Forward = []Forward{{Name: "echo", Listen: listenA}} })
	ch := watchEvents(t, a)
	// Let the stream open before anything happens: the first event must
	// not be missed by a subscription that came too late.
	waitFor(t, 5*time.Second, "subscriber", func() bool { return subscribers(a) == 1 })

	svcPort := freePort(t)
	checkPort := freePort(t) // nothing listens: the check fails
	b := startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Announce = []Announce{{Name: "echo", Port: svcPort, Host: "127.0.0.1", TargetPort: echo},
			{Name: "gone", Port: freePort(t), Host: "127.0.0.1", TargetPort: checkPort}}
	})
	expectEvent(t, ch, 10*time.Second, EventMemberJoined, "b", "")
	expectEvent(t, ch, 10*time.Second, EventServiceAppeared, "b", "echo")
	e := expectEvent(t, ch, 10*time.Second, EventListenerOpened, "a", "echo")
	if e.Detail != listenA {
		t.Errorf("listener-opened: detail %q, want the listen address", e.Detail)
	}

	// a's own service, failing its check, is a health event on a.
	if err := a.Announce(Announce{Name: "down", Port: freePort(t), Host: "127.0.0.1", TargetPort: checkPort}); err != nil {
		t.Fatal(err)
	}
	e = expectEvent(t, ch, 10*time.Second, EventHealthChanged, "a", "down")
	if e.Detail != "pending" && e.Detail != "failing" {
		t.Errorf("health of down: %q", e.Detail)
	}
	if e.Detail == "pending" {
		expectEvent(t, ch, 10*time.Second, EventHealthChanged, "a", "down")
	}

	// b fails: gossip stops without a leave.
	if err := b.cluster.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// b's port refuses a's connection once b is suspect, so its service
	// is withdrawn before memberlist declares b dead (gossip/suspect.go).
	expectEvent(t, ch, 15*time.Second, EventServiceWithdrawn, "b", "echo")
	expectEvent(t, ch, 5*time.Second, EventListenerClosed, "a", "echo")
	expectEvent(t, ch, 15*time.Second, EventMemberFailed, "b", "")
	for _, e := range drain(ch) {
		if e.Service == "gone" {
			t.Errorf("event for a service that never passed its check: %+v", e)
		}
	}

	// Stopping the node ends the stream (the status API can shut down).
	done := make(chan error, 1)
	go func() { done <- Watch(context.Background(), a.cfg.HTTP, false, func(Event) error { return nil }) }()
	waitFor(t, 5*time.Second, "second subscriber", func() bool { return subscribers(a) == 2 })
	a.stop(t)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("watch after stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event stream still open after the node stopped")
	}
}

func subscribers(n *testNode) int {
	n.events.mu.Lock()
	defer n.events.mu.Unlock()
	return len(n.events.subs)
}

func drain(ch <-chan Event) []Event {
	var out []Event
	for {
		select {
		case e := <-ch:
			out = append(out, e)
		default:
			return out
		}
	}
}

// scrape fetches and parses the metrics of the node at addr.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue returns the value of the sample of family name whose labels
// are exactly labels ("k=v" pairs), and whether there is one.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		var got []string
		for _, lp := range m.GetLabel() {
			got = append(got, lp.GetName()+"="+lp.GetValue())
		}
		if strings.Join(got, ",") != strings.Join(labels, ",") {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetrics scrapes /metrics after real connections through node b to
// node a's service, and after a failed one, and checks names, labels and
// values.
func TestMetrics(t *testing.T) {
	echo := echoServer(t)
	svcPort := freePort(t)
	deadPort := freePort(t) // nothing listens there
	a := startTestNode(t, "a", func(c *Config) {
		c.Announce = []Announce{{Name: "echo", Port: svcPort, Host: "127.0.0.1", TargetPort: echo},
			{Name: "dead", Port: freePort(t), Host: "127.0.0.1", TargetPort: deadPort}}
		c.Checks = map[svcname.Name]health.Check{"dead": {Kind: health.KindNone}} // offered although down
	})
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	deadListen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	goneListen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	b := startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Forward = []Forward{{Name: "echo", Listen: listen}, {Name: "dead", Listen: deadListen}, {Name: "gone", Listen: goneListen}}
		// b's own instance of gone, dialed directly: its port is closed.
		c.Announce = []Announce{{Name: "gone", Port: freePort(t), Host: "127.0.0.1", TargetPort: freePort(t)}}
		c.Checks = map[svcname.Name]health.Check{"gone": {Kind: health.KindNone}}
	})
	waitFor(t, 15*time.Second, "echo through b", func() bool { return echoOnce(listen) == nil })
	const conns = 4 // echoes: the one that waited for b, and three more
	for range conns - 1 {
		if err := echoOnce(listen); err != nil {
			t.Fatal(err)
		}
	}
	// One connection stays open while we scrape.
	open, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	waitFor(t, 5*time.Second, "the open connection counted", func() bool {
		v, _ := metricValue(scrape(t, b.cfg.HTTP), "ambassador_connections_active", "service=echo")
		return v == 1
	})
	// It shows in /v1/connections with its instance and its bytes so far.
	if _, err := open.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(open, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	// A byte is counted just after its write returns, so the echo can be
	// back before the in direction's count moves: wait for both counts.
	var cv Connections
	waitFor(t, 5*time.Second, "the open connection's bytes counted both ways", func() bool {
		if err := Fetch(context.Background(), b.cfg.HTTP, "/v1/connections", &cv); err != nil {
			t.Fatal(err)
		}
		return len(cv.Connections) == 1 && cv.Connections[0].BytesIn == 5 && cv.Connections[0].BytesOut == 5
	})
	if len(cv.Connections) != 1 {
		t.Fatalf("b: /v1/connections: %+v, want the one open connection", cv)
	}
	if c := cv.Connections[0]; c.Service != "echo" || c.Instance != "a" || c.Listen != listen || c.BytesIn != 5 || c.BytesOut != 5 ||
		c.Client != open.LocalAddr().String() || c.Age < 0 || c.Age > 30 {
		t.Errorf("b: connection %+v, want echo via a from %s with 5 bytes each way", c, open.LocalAddr())
	}

	fams := scrape(t, b.cfg.HTTP)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ambassador_connections_total", []string{"service=echo"}, conns + 1},
		{"ambassador_connections_active", []string{"service=echo"}, 1},
		{"ambassador_bytes_total", []string{"direction=in", "service=echo"}, conns*4 + 5},
		{"ambassador_bytes_total", []string{"direction=out", "service=echo"}, conns*4 + 5},
		{"ambassador_connection_failures_total", []string{"reason=dial", "service=echo"}, 0},
		{"ambassador_connection_failures_total", []string{"reason=handoff_refused", "service=echo"}, 0},
		{"ambassador_connection_failures_total", []string{"reason=no_instance", "service=echo"}, 0},
		{"ambassador_connection_retries_total", []string{"service=echo"}, 0},
		{"ambassador_members", []string{"state=alive"}, 2},
		{"ambassador_members", []string{"state=suspect"}, 0},
		{"ambassador_members", []string{"state=dead"}, 0},
		{"ambassador_members", []string{"state=left"}, 0},
		{"ambassador_service_instances", []string{"health=passing", "service=echo"}, 1},
		{"ambassador_upstream_connect_seconds", []string{"service=echo"}, conns + 1},
	} {
		got, ok := metricValue(fams, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("b: %s{%s} = %v (present %v), want %v", c.name, strings.Join(c.labels, ","), got, ok, c.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("b: %s missing: no Go or process collector", name)
		}
	}

	// a's data port took the handoffs; a checks its own service.
	fa := scrape(t, a.cfg.HTTP)
	if got, _ := metricValue(fa, "ambassador_handoffs_total", "result=ok", "service=echo"); got != conns+1 {
		t.Errorf("a: ambassador_handoffs_total{service=echo,result=ok} = %v, want %d", got, conns+1)
	}
	if got, ok := metricValue(fa, "ambassador_health_checks_total", "result=pass", "service=echo"); !ok || got < 1 {
		t.Errorf("a: ambassador_health_checks_total{service=echo,result=pass} = %v (present %v), want >= 1", got, ok)
	}

	// A connection to a service whose only instance is down: a's data port
	// refuses the handoff, b closes the client's connection.
	waitFor(t, 10*time.Second, "b listens for dead", func() bool {
		c, err := net.Dial("tcp", deadListen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	waitFor(t, 10*time.Second, "the failure counted", func() bool {
		v, _ := metricValue(scrape(t, b.cfg.HTTP), "ambassador_connection_failures_total", "reason=no_instance", "service=dead")
		return v >= 1
	})
	// A connection to b's own instance of gone, whose port is closed: the
	// dial fails, no peer is involved.
	gc, err := net.Dial("tcp", goneListen)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := gc.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("gone: read %d bytes, %v; want the connection closed", n, err)
	}
	gc.Close()
	waitFor(t, 10*time.Second, "the dial failure counted", func() bool {
		v, _ := metricValue(scrape(t, b.cfg.HTTP), "ambassador_connection_failures_total", "reason=no_instance", "service=gone")
		return v == 1
	})
	fb := scrape(t, b.cfg.HTTP)
	accepted, _ := metricValue(fb, "ambassador_connections_total", "service=dead")
	// Each failure under its own reason: a refused handoff is not a failed
	// dial, and a closed port is not a refused handoff.
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"reason=no_instance", "service=dead"}, accepted},
		{[]string{"reason=handoff_refused", "service=dead"}, accepted},
		{[]string{"reason=dial", "service=dead"}, 0},
		{[]string{"reason=no_instance", "service=gone"}, 1},
		{[]string{"reason=dial", "service=gone"}, 1},
		{[]string{"reason=handoff_refused", "service=gone"}, 0},
	} {
		if got, _ := metricValue(fb, "ambassador_connection_failures_total", c.labels...); got != c.want {
			t.Errorf("b: ambassador_connection_failures_total{%s} = %v, want %v (one per connection: one instance, no retry)",
				strings.Join(c.labels, ","), got, c.want)
		}
	}
	if accepted < 1 {
		t.Errorf("b: ambassador_connections_total{service=dead} = %v, want >= 1", accepted)
	}
	if got, _ := metricValue(scrape(t, a.cfg.HTTP), "ambassador_handoffs_total", "result=unavailable", "service=dead"); got != accepted {
		t.Errorf("a: ambassador_handoffs_total{service=dead,result=unavailable} = %v, want %v", got, accepted)
	}
	if got, _ := metricValue(fb, "ambassador_service_instances", "health=unchecked", "service=dead"); got != 0 {
		t.Errorf("b sees a's instance of dead as unchecked: %v", got)
	}
	if got, _ := metricValue(scrape(t, a.cfg.HTTP), "ambassador_service_instances", "health=unchecked", "service=dead"); got != 1 {
		t.Errorf("a: ambassador_service_instances{service=dead,health=unchecked} = %v, want 1", got)
	}
}

// TestEventStreamStalledClient: a client that opens /v1/events and then
// reads nothing (a watch paused with Ctrl-S, a hung script) is cut off once
// the stream cannot move for a while: it does not keep its goroutine and
// its connection slot for good, nor hold up the node's shutdown (which
// waits for the status API's connections) until the shutdown budget runs
// out and Run fails.
func TestEventStreamStalledClient(t *testing.T) {
	a := startTestNode(t, "a", func(*Config) {})
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		// A small receive window, so that the node's side fills soon.
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.DialContext(t.Context(), "tcp", a.cfg.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET /v1/events HTTP/1.1\r\nHost: %s\r\n\r\n", a.cfg.HTTP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "subscriber", func() bool { return subscribers(a) == 1 })
	var sub *subscriber
	a.events.mu.Lock()
	for s := range a.events.subs {
		sub = s
	}
	a.events.mu.Unlock()

	// Publish big events until the stream stops taking them: the queue
	// stays full for 2s (the handler only has to copy them into the
	// socket, which the client's small window keeps full).
	detail := strings.Repeat("x", 4096)
	stalled := false
	for sent := 0; !stalled && sent < 64<<20; {
		a.events.mu.Lock()
		for len(sub.ch) < cap(sub.ch) {
			a.events.seq++
			a.events.publishLocked(Event{Seq: a.events.seq, Time: time.Now(), Type: EventListenerBusy, Node: "a", Service: "x", Detail: detail})
			sent += len(detail)
		}
		a.events.mu.Unlock()
		stalled = true
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if len(sub.ch) < cap(sub.ch) {
				stalled = false
				break
			}
		}
	}
	if !stalled {
		t.Fatal("the stream kept taking events: the client could not stall it")
	}
	waitFor(t, 3*eventWriteWait, "the stalled stream to end", func() bool { return subscribers(a) == 0 })
	a.cancel()
	if err := <-a.done; err != nil {
		t.Errorf("Run with a stalled event client: %v, want nil", err)
	}
	a.done <- nil
}

// TestFailuresHelpDialBudget: the HELP of the dial reason says what
// --dial-timeout bounds (the connect alone) and that the TLS handshake and
// handoff reply after it have the data plane's handoff timeout of their
// own, as the README and --dial-timeout's help say: an operator who reads
// "within --dial-timeout" raises the wrong knob.
func TestFailuresHelpDialBudget(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	promtext.Write(bw, promtext.CollectorFunc(func(add func(promtext.Metric)) {
		add(promtext.MustNewConstMetric(descFailures, promtext.CounterValue, 0, "web", "dial"))
	}))
	bw.Flush()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatal(err)
	}
	help := fams["ambassador_connection_failures_total"].GetHelp()
	for _, want := range []string{
		"no connect within --dial-timeout",
		"no TLS handshake and handoff reply within " + forward.DefaultConfig().HandoffTimeout.String() + " after it",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("HELP %q does not say %q", help, want)
		}
	}
}

// sseFrame is one event of a server-sent event stream: its id line and
// the Event in its data line.
type sseFrame struct {
	id string
	e  Event
}

// readFrames reads the events of the stream at url, sent with the given
// Last-Event-ID ("" for none), until none has come for 300 ms.
func readFrames(t *testing.T, url, lastID string) []sseFrame {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	frames := make(chan sseFrame)
	go func() {
		defer close(frames)
		sc := bufio.NewScanner(resp.Body)
		var f sseFrame
		for sc.Scan() {
			line := sc.Text()
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				f.id = id
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				if err := json.Unmarshal([]byte(data), &f.e); err != nil {
					t.Errorf("data %q: %v", data, err)
					return
				}
				select {
				case frames <- f:
				case <-ctx.Done():
					return
				}
				f = sseFrame{}
			}
		}
	}()
	var out []sseFrame
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return out
			}
			out = append(out, f)
		case <-time.After(300 * time.Millisecond):
			return out
		}
	}
}

// TestEventStreamResume: the stream's ids name the node's run as well as
// the Seq, so a browser that reconnects with the Last-Event-ID it got
// before the node restarted gets the new run's kept events from its start
// (Seq restarts at 1, and a bare Seq from the old run would skip them, or
// all of them when it is higher than any yet). An id of this run, or a
// bare Seq (ids before run ids, and ?since=N) this run has reached, resumes
// after it.
func TestEventStreamResume(t *testing.T) {
	// run starts a node's event stream with n events kept (Seq 1 to n).
	run := func(n int) string {
		node := &Node{name: "me"}
		node.events.observe(eventState{members: map[string]string{}})
		for i := range n {
			node.events.observe(eventState{members: map[string]string{"n" + strconv.Itoa(i): "alive"}})
		}
		srv := httptest.NewServer(http.HandlerFunc(node.serveEvents))
		t.Cleanup(srv.Close)
		t.Cleanup(node.events.close)
		return srv.URL
	}
	seqs := func(fs []sseFrame) []uint64 {
		var out []uint64
		for _, f := range fs {
			out = append(out, f.e.Seq)
		}
		return out
	}
	idRE := regexp.MustCompile(`^[0-9a-z]+-[0-9]+$`)

	// The previous run: 57 events, and the ids the page saw.
	old := readFrames(t, run(57)+"?since=50", "")
	if got := seqs(old); !slices.Equal(got, []uint64{51, 52, 53, 54, 55, 56, 57}) {
		t.Fatalf("?since=50 in the old run: got Seqs %v, want 51 to 57", got)
	}
	for _, f := range old {
		if !idRE.MatchString(f.id) || !strings.HasSuffix(f.id, "-"+strconv.FormatUint(f.e.Seq, 10)) {
			t.Errorf("event %d: id %q, want RUN-%d", f.e.Seq, f.id, f.e.Seq)
		}
	}
	oldID := old[len(old)-1].id

	// The node restarts: a new run, with 5 events so far.
	url := run(5)
	now := readFrames(t, url+"?since=3", "")
	if len(now) != 2 {
		t.Fatalf("?since=3 in the new run: got %d events, want 2", len(now))
	}
	newRun, _, _ := strings.Cut(now[0].id, "-")
	oldRun, _, _ := strings.Cut(oldID, "-")
	if newRun == oldRun {
		t.Fatalf("the new run's ids %q carry the old run's %q", now[0].id, oldID)
	}
	for _, tc := range []struct {
		lastID string
		want   []uint64
	}{
		{oldID, []uint64{1, 2, 3, 4, 5}},         // from before the restart: the new run from its start
		{"57", []uint64{1, 2, 3, 4, 5}},          // a bare Seq this run has not reached: another run's
		{oldRun + "-2", []uint64{1, 2, 3, 4, 5}}, // an old run's Seq the new one has reached all the same
		{newRun + "-2", []uint64{3, 4, 5}},       // this run's: after it
		{newRun + "-5", nil},                     // this run's last: nothing yet
		{"2", []uint64{3, 4, 5}},                 // a bare Seq this run has reached: after it, as before
		{"garbage", nil},                         // no id: new events only
	} {
		got := seqs(readFrames(t, url, tc.lastID))
		if !slices.Equal(got, tc.want) {
			t.Errorf("Last-Event-ID %q: got Seqs %v, want %v", tc.lastID, got, tc.want)
		}
	}
}
