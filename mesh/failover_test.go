package mesh

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// ownHealth is the Health that n's ServicesView gives its own instance of
// service, or "" when it lists none.
func ownHealth(n *testNode, service string) string {
	for _, sv := range n.ServicesView().Services {
		if sv.Name != service {
			continue
		}
		for _, in := range sv.Instances {
			if in.Node == n.name {
				return in.Health
			}
		}
	}
	return ""
}

// checkerCounts is the checker's pass and failure count for service.
func checkerCounts(t *testing.T, n *testNode, service string) (passes, failures uint64) {
	t.Helper()
	for _, r := range n.checker.Status() {
		if r.Name.String() == service {
			return r.Passes, r.Failures
		}
	}
	t.Fatalf("node %s: the checker has no target %q", n.name, service)
	return 0, 0
}

// TestReloadKeepsHealthOfSameCheck: a reload that spells a service's check
// differently but means the same check (no --check, the default TCP
// connect, and then --check NAME=tcp) leaves the checker's target as it
// was, so no new result is reported; the node must keep offering the
// passing service rather than hold it back for a result that never comes.
func TestReloadKeepsHealthOfSameCheck(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after map[svcname.Name]health.Check
	}{
		{"default to explicit tcp", nil, map[svcname.Name]health.Check{"echo": {Kind: health.KindTCP}}},
		{"explicit tcp to default", map[svcname.Name]health.Check{"echo": {Kind: health.KindTCP}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := echoServer(t)
			a := startTestNode(t, "a", func(c *Config) {
				c.CheckInterval, c.CheckTimeout = 100*time.Millisecond, 50*time.Millisecond
				c.Announce = []Announce{{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: echo}}
				c.Checks = tc.before
			})
			waitFor(t, 10*time.Second, "echo passing on a", func() bool { return ownHealth(a, "echo") == "passing" })

			cfg := a.cfg
			cfg.Checks = tc.after
			if err := a.Reload(cfg); err != nil {
				t.Fatalf("reload: %v", err)
			}
			p0, _ := checkerCounts(t, a, "echo")
			waitFor(t, 10*time.Second, "three more passing checks", func() bool {
				p, _ := checkerCounts(t, a, "echo")
				return p >= p0+3
			})
			if got := ownHealth(a, "echo"); got != "passing" {
				t.Fatalf("a's echo after the reload and three passing checks: got %q, want %q", got, "passing")
			}
		})
	}
}

// TestDataPortRefusesFailingService: a service withdrawn because its check
// fails is refused on the data port, as a drained one is, so that a peer
// whose catalog is a gossip round behind moves on to another instance
// instead of being handed to the failing one.
func TestDataPortRefusesFailingService(t *testing.T) {
	echo := Announce{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: 12345}
	for _, tc := range []struct {
		name    string
		checks  map[string]health.Check
		healthy map[string]bool
		wantOK  bool
	}{
		{"passing", nil, map[string]bool{"echo": true}, true},
		{"failing", nil, map[string]bool{"echo": false}, false},
		{"waiting for its first check", nil, map[string]bool{}, false},
		{"unchecked", map[string]health.Check{"echo": {Kind: health.KindNone}}, map[string]bool{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{announces: []Announce{echo}, checks: tc.checks, healthy: tc.healthy}
			targets, ok := n.lookupLocal("echo")
			if ok != tc.wantOK {
				t.Fatalf("lookupLocal(echo): got ok %v (targets %q), want ok %v", ok, targets, tc.wantOK)
			}
			if ok && (len(targets) != 1 || targets[0] != echo.Target()) {
				t.Fatalf("lookupLocal(echo): got %q, want [%q]", targets, echo.Target())
			}
		})
	}
}

// TestOwnPortServiceFailingKeepsItsPort: a service announced on its own
// port (--announce echo:P=P: the service listens on 127.0.0.1:P itself)
// whose check fails must not have the node open a forwarder on that port.
// A forwarder there would answer the service's own health check (its
// target is that address), so the dead service would pass and be offered
// again, and the service could not bind its port when it restarts.
func TestOwnPortServiceFailingKeepsItsPort(t *testing.T) {
	port := freePort(t)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(ln)
	a := startTestNode(t, "a", func(c *Config) {
		c.CheckInterval, c.CheckTimeout = 100*time.Millisecond, 50*time.Millisecond
		c.Announce = []Announce{{Name: "echo", Port: port, Host: "127.0.0.1", TargetPort: port}}
	})
	// b offers echo too, so a has an instance to forward to; b listens
	// for it elsewhere, so that 127.0.0.1:port is a's business only.
	other := echoServer(t)
	startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Announce = []Announce{{Name: "echo", Port: port, Host: "127.0.0.1", TargetPort: other}}
		c.Forward = []Forward{{Name: "echo", Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))}}
	})
	waitFor(t, 10*time.Second, "a to see b's echo", func() bool {
		for _, sv := range a.ServicesView().Services {
			if sv.Name == "echo" && len(sv.Nodes) == 2 {
				return true
			}
		}
		return false
	})
	if st := ownHealth(a, "echo"); st != "passing" {
		t.Fatalf("a's own echo before the stop: got %q, want %q", st, "passing")
	}

	ln.Close()
	waitFor(t, 10*time.Second, "a's echo check to fail", func() bool {
		_, f := checkerCounts(t, a, "echo")
		return f > 0
	})
	p0, f0 := checkerCounts(t, a, "echo")
	listenAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitFor(t, 10*time.Second, "three more checks of a's stopped echo", func() bool {
		for _, ls := range a.proxy.Status() {
			if ls.Listen == listenAddr {
				t.Fatalf("a forwards on %s, the port of its own stopped service (listener %s)", listenAddr, ls.State)
			}
		}
		p, f := checkerCounts(t, a, "echo")
		if p > p0 {
			t.Fatalf("a's check of its stopped echo passed (%d passes, was %d): it reached something else on %s", p, p0, listenAddr)
		}
		return f >= f0+3
	})
	// The service restarts: its port is free for it.
	ln2, err := net.Listen("tcp", listenAddr)
	if err != nil {
		t.Fatalf("echo restarting on %s: %v", listenAddr, err)
	}
	serveEcho(ln2)
	t.Cleanup(func() { ln2.Close() })
	waitFor(t, 10*time.Second, "a's echo passing again", func() bool { return ownHealth(a, "echo") == "passing" })
}

// TestWithdrawAnnounceRaceKeepsHealth: a drain and an announce of the same
// service and target that run at once (two control-socket calls) can both
// change the node's state before either publishes. Both publishes then see
// the service announced with the target it had, so the checker keeps the
// target and reports nothing new; the node must still offer the passing
// service rather than wait for a result the checker will not send again.
// The test holds pubMu to make that interleaving happen every time.
func TestWithdrawAnnounceRaceKeepsHealth(t *testing.T) {
	echo := echoServer(t)
	ann := Announce{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: echo}
	a := startTestNode(t, "a", func(c *Config) {
		c.CheckInterval, c.CheckTimeout = 100*time.Millisecond, 50*time.Millisecond
		c.Announce = []Announce{ann}
	})
	waitFor(t, 10*time.Second, "echo passing on a", func() bool { return ownHealth(a, "echo") == "passing" })

	announced := func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return indexByName(a.announces, "echo") >= 0
	}
	errs := make(chan error, 2)
	a.pubMu.Lock()
	go func() { errs <- a.Withdraw("echo") }()
	waitFor(t, 10*time.Second, "the withdrawal to change a's state", func() bool { return !announced() })
	go func() { errs <- a.Announce(ann) }()
	waitFor(t, 10*time.Second, "the announcement to change a's state", announced)
	a.pubMu.Unlock()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	p0, _ := checkerCounts(t, a, "echo")
	waitFor(t, 10*time.Second, "three more passing checks", func() bool {
		p, _ := checkerCounts(t, a, "echo")
		return p >= p0+3
	})
	if got := ownHealth(a, "echo"); got != "passing" {
		t.Fatalf("a's echo after a drain and an announce at once and three passing checks: got %q, want %q", got, "passing")
	}
}
