package gossip

import (
	"fmt"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// sendsOf drains c's broadcast queues as memberlist would, one gossip
// packet at a time, and counts the broadcasts of node's newest record.
func sendsOf(t *testing.T, c *Cluster, node string) int {
	t.Helper()
	sends := map[uint64]int{} // by version
	for i := 0; c.bcast.NumQueued() > 0; i++ {
		if i == 1000 {
			t.Fatalf("%d records still queued after %d packets", c.bcast.NumQueued(), i)
		}
		for _, b := range c.bcast.GetBroadcasts(0, 1400) {
			r, err := decodeRecord(b)
			if err != nil {
				t.Fatalf("queued broadcast: %v", err)
			}
			if r.Node == node {
				sends[r.Version]++
			}
		}
	}
	var newest uint64
	for v := range sends {
		newest = max(newest, v)
	}
	return sends[newest]
}

// TestFirstRecordsPassedOnLess: another node's first record here is passed
// on firstRecordMult × log10 N times, since its owner's greeting, a want
// request and push/pull also deliver it, and not at all when it came in a
// push/pull from a peer that learnt it from someone else (passOn): a
// join's push/pull brings the whole catalog; this node's own record, an
// update of a record this node had and a leave, which nothing else
// repairs, keep RetransmitMult × log10 N. Before, every record was sent the full count,
// so a start of N nodes queued N records × 16 sends on every node of
// 1,000 (relay.go).
func TestFirstRecordsPassedOnLess(t *testing.T) {
	web := []Service{{Name: "web", Port: 80}}
	const members = 20 // alive besides "a" and "b": log10 scale 2
	full := retransmitLimitOf(DefaultConfig().Memberlist.RetransmitMult, members)
	few := retransmitLimitOf(firstRecordMult, members)
	if few >= full {
		t.Fatalf("first-record limit %d not below the full %d: the table cannot tell them apart", few, full)
	}
	for _, tt := range []struct {
		name string
		node string // whose sends are counted
		do   func(c *Cluster, d *delegate)
		want int
	}{
		{name: "own record", node: "a", want: full, do: func(c *Cluster, d *delegate) {
			c.SetServices(web)
		}},
		{name: "own record refuting a newer copy", node: "a", want: full, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "a", Addr: "10.0.0.1", Version: c.self.Version + 1}}}, false)
		}},
		{name: "first record, gossip", node: "b", want: few, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1, Services: web}}}, false)
		}},
		{name: "first record, push/pull, the peer's own", node: "b", want: few, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1, Services: web}}}, true)
		}},
		{name: "first record, push/pull, the peer's own without services", node: "b", want: 0, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1}}}, true)
		}},
		{name: "first record, push/pull, learnt by the peer", node: "b", want: 0, do: func(c *Cluster, d *delegate) {
			c.merge([]record{
				{Entry: Entry{Node: "m00", Addr: "10.0.1.1", Version: 1, Services: web}},
				{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1, Services: web}},
			}, true)
		}},
		{name: "first record, a join's push/pull of the whole catalog", node: "m07", want: 0, do: func(c *Cluster, d *delegate) {
			var rs []record
			for i := range members - 1 {
				rs = append(rs, record{Entry: Entry{Node: fmt.Sprintf("m%02d", i), Addr: "10.0.1.1", Version: 1, Services: web}})
			}
			c.merge(rs, true)
			if q := c.bcast.NumQueued(); q != 1 {
				t.Errorf("%d records queued after a join's push/pull, want 1: the peer's own", q)
			}
		}},
		{name: "first record, arrived before its member", node: "early", want: few, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "early", Addr: "10.0.0.9", Version: 1, Services: web}}}, false)
			d.NotifyJoin(mlNode("early", "10.0.0.9", memberlist.StateAlive))
		}},
		{name: "first record, a leave", node: "b", want: full, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1}, Left: true}}, false)
		}},
		{name: "update, gossip", node: "b", want: full, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1}}}, false)
			c.bcast.GetBroadcasts(0, 1400) // under way
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 2, Services: web}}}, false)
		}},
		{name: "update, push/pull", node: "b", want: full, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1}}}, false)
			c.bcast.GetBroadcasts(0, 1400)
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 2, Services: web}}}, true)
		}},
		{name: "update, push/pull, learnt by the peer", node: "b", want: full, do: func(c *Cluster, d *delegate) {
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1}}}, false)
			c.bcast.GetBroadcasts(0, 1400)
			c.merge([]record{
				{Entry: Entry{Node: "m00", Addr: "10.0.1.1", Version: 1}},
				{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 2, Services: web}},
			}, true)
		}},
		{name: "leave, push/pull, learnt by the peer", node: "b", want: full, do: func(c *Cluster, d *delegate) {
			c.merge([]record{
				{Entry: Entry{Node: "m00", Addr: "10.0.1.1", Version: 1}},
				{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1}, Left: true},
			}, true)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, d := newOffline(t, "a")
			d.NotifyJoin(mlNode("b", "10.0.0.2", memberlist.StateAlive))
			for i := range members - 1 {
				d.NotifyJoin(mlNode(fmt.Sprintf("m%02d", i), "10.0.1.1", memberlist.StateAlive))
			}
			tt.do(c, d)
			if got := sendsOf(t, c, tt.node); got != tt.want {
				t.Errorf("%s's record sent %d times, want %d (full %d, first record %d)", tt.node, got, tt.want, full, few)
			}
		})
	}
}

// retransmitLimitOf is memberlist's retransmitLimit (util.go): mult ×
// ceil(log10(n+1)).
func retransmitLimitOf(mult, n int) int {
	scale := 1
	for p := 10; p < n+1; p *= 10 {
		scale++
	}
	return mult * scale
}

// TestOwnRecordNotCrowdedOut: a start's first records fill every packet
// for a while; this node's own change still goes out in the next one.
// memberlist's queue sends the largest of the least sent first, so first
// records sized to leave less room than the own record takes crowded it
// out of the packet when all shared one queue.
func TestOwnRecordNotCrowdedOut(t *testing.T) {
	const packet = 1400
	c, d := newOffline(t, "a")
	c.SetServices([]Service{{Name: "db", Port: 5432}})
	own, err := encodeRecord(c.self)
	if err != nil {
		t.Fatal(err)
	}
	c.bcast.GetBroadcasts(0, packet) // sent once: no fresher than the others
	// Records of k services, k such that three fill the packet but for
	// less room than the own record needs.
	var many []Service
	for k := 0; ; k++ {
		if k == 30 {
			t.Fatalf("no service count makes three records fill a packet to within %d bytes", len(own))
		}
		many = append(many, Service{Name: svcname.Must(fmt.Sprintf("svc-%03d", k)), Port: 8000 + k})
		b, err := encodeRecord(record{Entry: Entry{Node: "n000", Addr: "10.0.1.1", Version: 1, Services: many}})
		if err != nil {
			t.Fatal(err)
		}
		if 3*len(b) <= packet && packet-3*len(b) < len(own) {
			break
		}
	}
	for i := range 200 {
		name := fmt.Sprintf("n%03d", i)
		d.NotifyJoin(mlNode(name, "10.0.1.1", memberlist.StateAlive))
		c.merge([]record{{Entry: Entry{Node: name, Addr: "10.0.1.1", Version: 1, Services: many}}}, false)
	}
	for _, b := range c.bcast.GetBroadcasts(0, packet) {
		if r, err := decodeRecord(b); err == nil && r.Node == "a" {
			return
		}
	}
	t.Errorf("the next packet does not carry this node's queued record")
}
