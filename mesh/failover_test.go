package mesh

import (
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
