package mesh

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// TestMetricsSuspect stops c's gossip without a leave: a's
// ambassador_members gauge counts c as suspect (1) before it counts it
// dead, and a's members list says "suspect" meanwhile.
func TestMetricsSuspect(t *testing.T) {
	// A suspicion of seconds, long enough to scrape during it.
	slow := func(c *Config) { c.SuspicionMult = 6 }
	a := startTestNode(t, "a", slow)
	join := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
	startTestNode(t, "b", func(c *Config) { slow(c); c.Join = join })
	c := startTestNode(t, "c", func(c *Config) { slow(c); c.Join = join })
	members := func(state string) float64 {
		v, _ := metricValue(scrape(t, a.cfg.HTTP), "ambassador_members", "state="+state)
		return v
	}
	waitFor(t, 15*time.Second, "3 alive members", func() bool { return members("alive") == 3 })

	if err := c.cluster.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "c counted suspect", func() bool {
		fams := scrape(t, a.cfg.HTTP)
		s, _ := metricValue(fams, "ambassador_members", "state=suspect")
		al, _ := metricValue(fams, "ambassador_members", "state=alive")
		d, _ := metricValue(fams, "ambassador_members", "state=dead")
		return s == 1 && al == 2 && d == 0
	})
	if st := a.members()["c"]; st != "suspect" && st != "dead" {
		t.Errorf("a lists c as %q while the gauge counts it suspect", st)
	}
	waitFor(t, 30*time.Second, "c counted dead", func() bool {
		fams := scrape(t, a.cfg.HTTP)
		s, _ := metricValue(fams, "ambassador_members", "state=suspect")
		d, _ := metricValue(fams, "ambassador_members", "state=dead")
		return s == 0 && d == 1
	})
}

// members is the node's member list, name to state.
func (tn *testNode) members() map[string]string {
	out := map[string]string{}
	for _, m := range tn.cluster.Members() {
		out[m.Name] = m.State
	}
	return out
}
