package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
)

// pageState is what the live page shows, read from its DOM.
type pageState struct {
	Loaded   float64           `json:"loaded"` // window.ambLoaded: new on every (re)load
	Live     string            `json:"live"`   // "on" while the event stream is open
	Members  map[string]string `json:"members"`
	Services map[string]string `json:"services"` // name → "node:health ..."
	Conns    []string          `json:"conns"`
	Events   []string          `json:"events"` // "type node", newest first
	InRate   string            `json:"inRate"`
}

const readPage = `(() => ({
  loaded: window.ambLoaded,
  live: document.querySelector('#live').className,
  members: Object.fromEntries([...document.querySelectorAll('#members tr[data-member]')].map(r => [r.dataset.member, r.dataset.state])),
  services: Object.fromEntries([...document.querySelectorAll('#services tr[data-service]')].map(r => [r.dataset.service, r.dataset.instances])),
  conns: [...document.querySelectorAll('#conns tr[data-conn]')].map(r => r.dataset.conn),
  events: [...document.querySelectorAll('#events tr[data-event]')].map(r => r.dataset.event + ' ' + r.children[2].textContent),
  inRate: document.querySelector('#s-in').textContent,
}))()`

// artefactDir is where lab tests keep files worth looking at after a run:
// $AMB_ARTEFACTS, or ambassador-artefacts in the temporary directory.
func artefactDir(t *testing.T) string {
	d := os.Getenv("AMB_ARTEFACTS")
	if d == "" {
		d = filepath.Join(os.TempDir(), "ambassador-artefacts")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestLabPage loads the live page in headless Chromium on host b of a
// three-host lab: the members, both services with their instances, and an
// open connection with its throughput appear; then c leaves and the page
// shows it, from the event stream, without a reload. Screenshots of both
// moments are kept (AMB_UPDATE_DOCS=1 also writes docs/page.png).
func TestLabPage(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "chromium", "bash")
	a, b, c := l.AddHost("a"), l.AddHost("b"), l.AddHost("c")
	startHelper(t, a, "web-service", "serve-sha", "127.0.0.1:12400")
	startHelper(t, c, "cache-service", "serve-sha", "127.0.0.1:12401")
	startNode(a, "--announce", "web:8080=12400")
	startNode(b)
	nodeC := startNode(c, "--announce", "cache:6380=12401")

	lab.WaitFor(t, 30*time.Second, "3 members and both services on b", func() bool {
		return len(aliveMembers(t, b)) == 3 && len(hostsOf(t, b, "web")) == 1 && len(hostsOf(t, b, "cache")) == 1
	})
	name := map[string]string{}
	for _, m := range members(t, b).Members {
		for _, h := range []*lab.Host{a, b, c} {
			if m.Addr == h.Addr {
				name[h.Name] = m.Name
			}
		}
	}
	// A client on b that keeps sending: an open connection with traffic.
	b.Start("trickle", "bash", "-c",
		`exec 3<>/dev/tcp/127.0.0.1/8080; for i in $(seq 600); do head -c 65536 /dev/zero >&3 || exit 1; sleep 0.1; done`)

	br := b.StartBrowser(1280, 900)
	if err := br.Navigate("http://127.0.0.1:7948/"); err != nil {
		t.Fatal(err)
	}
	var st pageState
	read := func() pageState {
		var s pageState
		if err := br.Eval(readPage, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	start := time.Now()
	lab.WaitFor(t, 20*time.Second, "members, services and the open connection on the page", func() bool {
		st = read()
		return st.Live == "on" &&
			st.Members[name["a"]] == "alive" && st.Members[name["b"]] == "alive" && st.Members[name["c"]] == "alive" &&
			st.Services["web"] == name["a"]+":passing" && st.Services["cache"] == name["c"]+":passing" &&
			slices.Contains(st.Conns, "web") && st.InRate != "0 B/s" && st.InRate != "–"
	})
	t.Logf("FIGURE page showed 3 members, 2 services and the open connection %s after load", time.Since(start).Round(time.Millisecond))
	shot := func(file string) {
		p := filepath.Join(artefactDir(t), file)
		if err := br.Screenshot(p); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	shot("page.png")
	if os.Getenv("AMB_UPDATE_DOCS") == "1" {
		if err := br.Screenshot(filepath.Join("docs", "page.png")); err != nil {
			t.Fatal(err)
		}
	}

	loaded := st.Loaded
	if err := nodeC.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	lab.WaitFor(t, 20*time.Second, "c's departure on the page", func() bool {
		st = read()
		if st.Loaded != loaded {
			t.Fatalf("the page reloaded (%v, was %v): it must update in place", st.Loaded, loaded)
		}
		_, cache := st.Services["cache"]
		return !cache && st.Members[name["c"]] != "alive" && slices.Contains(st.Events, "member-left "+name["c"])
	})
	t.Logf("FIGURE page showed c's leave %s after SIGTERM to its node", time.Since(left).Round(time.Millisecond))
	if st.Services["web"] != name["a"]+":passing" || st.Members[name["a"]] != "alive" {
		t.Errorf("after c left: web %q, a %q; want them unchanged", st.Services["web"], st.Members[name["a"]])
	}
	if !slices.ContainsFunc(st.Events, func(e string) bool { return strings.HasPrefix(e, "service-withdrawn "+name["c"]) }) {
		t.Errorf("no service-withdrawn event for c on the page: %v", st.Events)
	}
	shot("page-after-leave.png")
}
