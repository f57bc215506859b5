package gossip

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRestartWithClockBehind checks that a node that left and comes back
// at once, its clock now behind the one of its previous run (stepped back
// at boot), gets its new catalog shown: its records carry lower versions
// than the left record peers keep of the previous run, and only that
// record, learnt in its join, tells it the version to beat. The push/pull
// interval is an hour, so nothing but the join can bring it.
func TestRestartWithClockBehind(t *testing.T) {
	slow := func(cfg *Config) { cfg.Memberlist.PushPullInterval = time.Hour }
	a := newNodeWith(t, "a", "test", 7001, slow)
	c := newNodeWith(t, "c", "test", 7009, slow)
	join(t, c, a)
	old := newNodeWith(t, "b", "test", 7002, slow)
	// The previous run's clock was an hour ahead of the next one's.
	old.mu.Lock()
	old.self.Version = uint64(time.Now().Add(time.Hour).UnixNano())
	old.mu.Unlock()
	join(t, old, a)
	old.SetServices([]Service{{Name: "web", Port: 80}})
	waitCatalogs(t, []*Cluster{a, c}, []Entry{
		{Node: "a", Addr: "127.0.0.1", DataPort: 7001},
		{Node: "b", Addr: "127.0.0.1", DataPort: 7002, Services: []Service{{Name: "web", Port: 80}}},
		{Node: "c", Addr: "127.0.0.1", DataPort: 7009},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := old.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b leave", func() error {
		if got := memberState(a, "b"); got != stateLeft {
			return fmt.Errorf("member b: got %q, want %q", got, stateLeft)
		}
		return nil
	})
	// Nothing a or c still sends may carry b's left record: it would reach
	// the new b by chance.
	waitFor(t, "broadcasts drain", func() error {
		if n := a.bcast.NumQueued() + c.bcast.NumQueued(); n != 0 {
			return fmt.Errorf("a and c queue %d broadcasts", n)
		}
		return nil
	})

	b := newNodeWith(t, "b", "test", 7003, slow)
	b.SetServices([]Service{{Name: "api", Port: 8080}})
	join(t, b, a)
	waitCatalogs(t, []*Cluster{a, b, c}, []Entry{
		{Node: "a", Addr: "127.0.0.1", DataPort: 7001},
		{Node: "b", Addr: "127.0.0.1", DataPort: 7003, Services: []Service{{Name: "api", Port: 8080}}},
		{Node: "c", Addr: "127.0.0.1", DataPort: 7009},
	})
}
