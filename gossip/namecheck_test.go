package gossip

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// TestNameConflictHealedPartition forms the conflict after both twins run:
// two partitions, {a, c} and {twin, d}, each with a node named "a" (the
// twin started later), heal when c joins d. Neither twin joins anyone;
// they hear of each other only through push/pull with the other side.
// The twin must get the conflict and the first a must not.
func TestNameConflictHealedPartition(t *testing.T) {
	claimed := make(chan struct{}, 1)
	a := newNodeWith(t, "a", "heal-test", 1, func(c *Config) {
		c.Logger = slog.New(&noticeHandler{msg: "claims this node's name", c: claimed})
	})
	c := newNode(t, "c", "heal-test", 3)
	join(t, c, a)
	twin := newNode(t, "a", "heal-test", 2)
	d := newNode(t, "d", "heal-test", 4)
	join(t, d, twin)
	for _, n := range []*Cluster{a, twin} {
		select {
		case m := <-n.Conflicts():
			t.Fatalf("conflict %+v before the partitions healed", m)
		default:
		}
	}

	join(t, c, d) // the heal
	select {
	case m := <-twin.Conflicts():
		if m.Name != "a" || m.Addr != "127.0.0.1" || m.Port != a.GossipPort() {
			t.Errorf("twin: conflict with %+v, want a at 127.0.0.1:%d", m, a.GossipPort())
		}
	case <-time.After(3 * waitTimeout): // push/pull every 5s; a few rounds
		t.Fatalf("twin: no conflict reported within %v of the heal", 3*waitTimeout)
	}
	select {
	case <-claimed:
	case <-time.After(3 * waitTimeout):
		t.Fatalf("a: no warning about the twin within %v of the heal", 3*waitTimeout)
	}
	select {
	case m := <-a.Conflicts():
		t.Errorf("a: conflict %+v reported, want none (a started first and holds the name)", m)
	default:
	}
}

// TestConfirmName checks that ConfirmName answers nil only for a live node
// of this cluster that holds this node's name at the given address.
func TestConfirmName(t *testing.T) {
	a := newNode(t, "a", "confirm-test", 1)
	twin := newNode(t, "a", "confirm-test", 2)
	b := newNode(t, "b", "confirm-test", 3)
	other := newNode(t, "a", "another-cluster", 4)
	gone := newNode(t, "a", "confirm-test", 5)
	gonePort := gone.GossipPort()
	if err := gone.Shutdown(); err != nil {
		t.Fatal(err)
	}
	at := func(c *Cluster) Member { return Member{Name: "a", Addr: "127.0.0.1", Port: c.GossipPort()} }
	for _, tc := range []struct {
		name string
		m    Member
		ok   bool
	}{
		{"namesake alive there", at(a), true},
		{"a node of another name there", at(b), false},
		{"a namesake of another cluster there", at(other), false},
		{"nothing there any more", Member{Name: "a", Addr: "127.0.0.1", Port: gonePort}, false},
		{"not an IP", Member{Name: "a", Addr: "a.example", Port: 7946}, false},
		// A stale record of this very node: its own socket would answer.
		{"this node's own gossip socket", at(twin), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := twin.ConfirmName(t.Context(), tc.m)
			if (err == nil) != tc.ok {
				t.Errorf("ConfirmName(%+v): %v, want ok %v", tc.m, err, tc.ok)
			}
		})
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := twin.ConfirmName(ctx, at(a)); err == nil {
		t.Error("ConfirmName with a cancelled context: got nil")
	}
	if err := gone.ConfirmName(t.Context(), at(a)); err == nil {
		t.Error("ConfirmName after Shutdown: got nil")
	}
}
