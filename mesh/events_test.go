package mesh

import (
	"net"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestRemoteHealthEvents follows node a's /v1/events while the backend of
// a service announced by node b goes down and comes back: a reports b's
// instance failing, then passing, from the catalog alone (a does not
// check b's backend itself).
func TestRemoteHealthEvents(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backendAddr := backend.Addr().String()
	serveEcho(backend)
	t.Cleanup(func() { backend.Close() })
	port := backend.Addr().(*net.TCPAddr).Port

	a := startTestNode(t, "a", func(c *Config) {})
	ch := watchEvents(t, a)
	waitFor(t, 5*time.Second, "subscriber", func() bool { return subscribers(a) == 1 })
	startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Announce = []Announce{{Name: "web", Port: freePort(t), Host: "127.0.0.1", TargetPort: port}}
		c.CheckInterval, c.CheckTimeout = 100*time.Millisecond, 50*time.Millisecond
	})
	expectEvent(t, ch, 10*time.Second, EventServiceAppeared, "b", "web")

	// nextHealth returns the next health-changed event about b's web; the
	// appearance above must not have been one.
	nextHealth := func(want string) {
		t.Helper()
		e := expectEvent(t, ch, 10*time.Second, EventHealthChanged, "b", "web")
		if e.Detail != want {
			t.Fatalf("health-changed b web: detail %q, want %q", e.Detail, want)
		}
	}
	backend.Close()
	nextHealth("failing")
	// The services view and the instances gauge show it failing (not gone),
	// and it is not routed to: it is not among the nodes offering web.
	waitFor(t, 5*time.Second, "b's web failing in a's services view", func() bool { return instanceHealth(a, "web", "b") == "failing" })
	for _, sv := range a.ServicesView().Services {
		if sv.Name == "web" && slices.Contains(sv.Nodes, "b") {
			t.Errorf("a's services view offers web on b while its check fails: nodes %v", sv.Nodes)
		}
	}
	if got := instancesGauge(t, a, "web", "failing"); got != 1 {
		t.Errorf("ambassador_service_instances{service=web,health=failing} on a = %v, want 1", got)
	}

	// Back up on the same port.
	var back net.Listener
	waitFor(t, 5*time.Second, "the backend listening again", func() bool {
		back, err = net.Listen("tcp", backendAddr)
		return err == nil
	})
	serveEcho(back)
	t.Cleanup(func() { back.Close() })
	nextHealth("passing")
	if got := instanceHealth(a, "web", "b"); got != "passing" {
		t.Errorf("a's services view: b's web %q, want passing", got)
	}
	if got := instancesGauge(t, a, "web", "failing"); got != 0 {
		t.Errorf("ambassador_service_instances{service=web,health=failing} on a = %v once passing again, want 0", got)
	}
}

// instanceHealth returns the health node n's services view gives the
// instance of service on node, or "" when it lists none.
func instanceHealth(n *testNode, service, node string) string {
	for _, sv := range n.ServicesView().Services {
		if sv.Name != service {
			continue
		}
		for _, in := range sv.Instances {
			if in.Node == node {
				return in.Health
			}
		}
	}
	return ""
}

// instancesGauge scrapes node n and returns ambassador_service_instances
// for service and health (0 when there is no such sample).
func instancesGauge(t *testing.T, n *testNode, service, health string) float64 {
	t.Helper()
	v, _ := metricValue(scrape(t, n.cfg.HTTP), "ambassador_service_instances", "health="+health, "service="+service)
	return v
}
