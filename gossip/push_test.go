package gossip

import (
	"testing"
	"time"
)

// TestPushSelf: a changed own record reaches a member at once by the
// direct push, with gossip, probes (which piggyback broadcasts) and
// push/pull slowed to an hour so that only the push can deliver it; before Start nothing is pushed (and nothing
// breaks).
func TestPushSelf(t *testing.T) {
	slow := func() Config {
		cfg := DefaultConfig()
		cfg.Memberlist.GossipInterval = time.Hour
		cfg.Memberlist.PushPullInterval = time.Hour
		cfg.Memberlist.ProbeInterval = time.Hour
		cfg.Memberlist.ProbeTimeout = time.Minute
		return cfg
	}
	sn := &simNet{}
	a := startSimNodeWith(t, sn, 0, slow())
	b := startSimNodeWith(t, sn, 1, slow())
	if _, err := b.c.Join([]string{a.t.addr}); err != nil {
		t.Fatal(err)
	}
	if !b.c.Alive(a.c.LocalNode()) || !b.c.Alive(b.c.LocalNode()) || b.c.Alive("nobody") {
		t.Errorf("Alive: a %v, self %v, nobody %v; want true, true, false",
			b.c.Alive(a.c.LocalNode()), b.c.Alive(b.c.LocalNode()), b.c.Alive("nobody"))
	}
	has := func(port int) bool {
		for _, e := range b.c.Catalog() {
			if e.Node == a.c.LocalNode() && len(e.Services) == 1 && e.Services[0].Port == port {
				return true
			}
		}
		return false
	}
	if !has(7000) {
		t.Fatalf("after the join b lacks a's record: %+v", b.c.Catalog())
	}
	// b's Join returns once b has a's state; a merges b's a moment later.
	if _, ok := waitAll([]simNode{a}, 2*time.Second, func(simNode) bool { return a.c.Alive(b.c.LocalNode()) }); !ok {
		t.Fatal("a does not list b alive after b joined")
	}
	a.c.SetServices([]Service{{Name: "fresh", Port: 7100}})
	if _, ok := waitAll([]simNode{b}, 2*time.Second, func(simNode) bool { return has(7100) }); !ok {
		t.Fatalf("a's new service did not reach b within 2s: %+v", b.c.Catalog())
	}

	c, err := New(func() Config { cfg := slow(); cfg.NodeName = "unstarted"; cfg.AdvertiseAddr = "127.0.0.1"; return cfg }())
	if err != nil {
		t.Fatal(err)
	}
	c.SetServices([]Service{{Name: "x", Port: 1}}) // not started: no push, no panic
}
