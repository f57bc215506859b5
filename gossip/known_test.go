package gossip

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestKnown: discovery skips a peer memberlist reported in any state, so a
// live node wrongly marked dead is not joined by every node that hears it
// on mDNS; a member forgotten after the reap time is unknown again.
func TestKnown(t *testing.T) {
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, st := range map[string]string{"alive": stateAlive, "dead": stateDead, "left": stateLeft} {
		c.members[name] = &member{Member: Member{Name: name, State: st}, since: now}
	}
	c.members["forgotten"] = &member{Member: Member{Name: "forgotten", State: stateDead}, since: now.Add(-c.reap - time.Second)}
	for _, tt := range []struct {
		name string
		want bool
	}{{"alive", true}, {"dead", true}, {"left", true}, {"stranger", false}, {"forgotten", false}} {
		if got := c.Known(tt.name); got != tt.want {
			t.Errorf("Known(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestPendingRecordPassedOn: a record that arrived before its node's
// alive message is passed on (queued for broadcast) once memberlist
// reports the node, like a newer record of a known member; before, it
// stopped spreading at every node where it arrived early.
func TestPendingRecordPassedOn(t *testing.T) {
	c, d := newOffline(t, "a")
	c.merge([]record{{Entry: Entry{Node: "early", Addr: "10.0.0.9", Version: 7,
		Services: []Service{{Name: "web", Port: 80}}}}}, false)
	if got := c.bcast.NumQueued(); got != 0 {
		t.Fatalf("queued before the member is known: %d, want 0", got)
	}
	d.NotifyJoin(mlNode("early", "10.0.0.9", memberlist.StateAlive))
	if got := c.bcast.NumQueued(); got != 1 {
		t.Fatalf("queued after NotifyJoin: %d, want 1 (the early record)", got)
	}
	bs := c.bcast.GetBroadcasts(0, 1400)
	if len(bs) != 1 {
		t.Fatalf("GetBroadcasts: %d, want 1", len(bs))
	}
	r, err := decodeRecord(bs[0])
	if err != nil || r.Node != "early" || r.Version != 7 {
		t.Errorf("broadcast: %+v, %v; want the early record, version 7", r, err)
	}
	// A join of a member whose record is current queues nothing more.
	for i := 0; c.bcast.NumQueued() > 0 && i < 100; i++ {
		c.bcast.GetBroadcasts(0, 1400) // transmit it out of the queue
	}
	d.NotifyJoin(mlNode("early", "10.0.0.9", memberlist.StateAlive))
	if got := c.bcast.NumQueued(); got != 0 {
		t.Errorf("queued after a second NotifyJoin: %d, want 0", got)
	}
}

// TestPruneWalksAtMostEverySixteenthReap: merge prunes on every gossip
// message, so the walk over all members runs at most once per reap/16; a
// dead member is still forgotten within reap + reap/16.
func TestPruneWalksAtMostEverySixteenthReap(t *testing.T) {
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	step := c.reap / 16
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members["old"] = &member{Member: Member{Name: "old", State: stateDead}, since: t0.Add(-c.reap - time.Millisecond)}
	c.pruneLocked(t0)
	if _, ok := c.members["old"]; ok {
		t.Fatal("a member dead for longer than reap survived the first prune")
	}
	// Dead just past reap, but the last walk was less than reap/16 ago.
	c.members["late"] = &member{Member: Member{Name: "late", State: stateDead}, since: t0.Add(-c.reap - time.Millisecond)}
	c.pruneLocked(t0.Add(step - time.Millisecond))
	if _, ok := c.members["late"]; !ok {
		t.Fatal("the members were walked again within reap/16")
	}
	c.pruneLocked(t0.Add(step))
	if _, ok := c.members["late"]; ok {
		t.Fatal("a member dead for reap + reap/16 was not forgotten")
	}
}

// TestAliveCountFollowsEvents: the alive count (broadcast queue sizing,
// the digest in every ack) is kept by memberUp and memberDown rather than
// counted over all members on each join; it must match a count after any
// sequence of joins, repeats, failures, leaves and returns.
func TestAliveCountFollowsEvents(t *testing.T) {
	c, d := newOffline(t, "self")
	count := func() int64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		var n int64
		for _, m := range c.members {
			if m.State == stateAlive {
				n++
			}
		}
		return n
	}
	for i, step := range []struct {
		join bool
		name string
	}{
		{true, "self"}, {true, "a"}, {true, "b"}, {true, "a"}, // a repeated alive message
		{false, "a"}, {false, "a"}, // dead twice
		{false, "never-seen"}, // down before any up
		{true, "a"}, {true, "never-seen"}, {false, "b"}, {true, "c"},
	} {
		if step.join {
			d.NotifyJoin(mlNode(step.name, "10.0.0.1", memberlist.StateAlive))
		} else {
			d.NotifyLeave(mlNode(step.name, "10.0.0.1", memberlist.StateDead))
		}
		if got, want := c.numAlive.Load(), count(); got != want {
			t.Fatalf("after step %d (%+v): alive count %d, members alive %d", i, step, got, want)
		}
	}
	if got := c.numAlive.Load(); got != 4 { // self, a, never-seen, c
		t.Errorf("alive count %d, want 4", got)
	}
}

// TestPushPullRecordsPassedOn: a record learnt from a push/pull is
// re-broadcast unless it is the first of a member that has nothing to
// route to; records from gossip, updates, and records with services, down
// services or a leave always are. Either way the catalog has it.
func TestPushPullRecordsPassedOn(t *testing.T) {
	web := []Service{{Name: "web", Port: 80}}
	for _, tt := range []struct {
		name     string
		had      bool // an older record of the member was here
		rec      Entry
		left     bool
		pushPull bool
		want     int // queued
	}{
		{name: "push/pull, first, nothing to route", pushPull: true, want: 0},
		{name: "gossip, first, nothing to route", want: 1},
		{name: "push/pull, first, services", rec: Entry{Services: web}, pushPull: true, want: 1},
		{name: "push/pull, first, down", rec: Entry{Down: web}, pushPull: true, want: 1},
		{name: "push/pull, first, left", left: true, pushPull: true, want: 1},
		{name: "push/pull, update", had: true, pushPull: true, want: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, d := newOffline(t, "a")
			d.NotifyJoin(mlNode("b", "10.0.0.2", memberlist.StateAlive))
			if tt.had {
				c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1, Services: web}}}, false)
				for i := 0; c.bcast.NumQueued() > 0 && i < 100; i++ {
					c.bcast.GetBroadcasts(0, 1400) // transmit it out of the queue
				}
			}
			r := record{Entry: tt.rec, Left: tt.left}
			r.Node, r.Addr, r.Version = "b", "10.0.0.2", 2
			c.merge([]record{r}, tt.pushPull)
			if got := c.bcast.NumQueued(); got != tt.want {
				t.Errorf("queued %d, want %d", got, tt.want)
			}
			c.mu.Lock()
			s, ok := c.records["b"]
			c.mu.Unlock()
			if !ok || s.rec.Version != 2 {
				t.Errorf("record of b not merged: %+v", s)
			}
		})
	}
}
