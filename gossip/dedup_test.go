package gossip

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestBroadcastCopiesNotDecoded: a copy of the broadcast that brought a
// stored record is dropped before decoding (no allocation); a newer
// record replaces the remembered broadcast, a record learnt by push/pull
// is remembered at its first broadcast copy, and forgetting a member
// forgets its broadcast.
func TestBroadcastCopiesNotDecoded(t *testing.T) {
	c, d := newOffline(t, "a")
	d.NotifyJoin(mlNode("b", "10.0.0.2", memberlist.StateAlive))
	enc := func(version uint64, port int) []byte {
		t.Helper()
		b, err := encodeRecord(record{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: version,
			Services: []Service{{Name: "web", Port: port}}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	version := func() uint64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		if s, ok := c.records["b"]; ok {
			return s.rec.Version
		}
		return 0
	}
	v1, v2, v3 := enc(1, 80), enc(2, 81), enc(3, 82)

	d.NotifyMsg(v1)
	if version() != 1 || !c.seenBroadcast(v1) {
		t.Fatalf("after the first broadcast: version %d, remembered %v; want 1, true", version(), c.seenBroadcast(v1))
	}
	if n := testing.AllocsPerRun(100, func() { d.NotifyMsg(v1) }); n != 0 {
		t.Errorf("a copy of a stored record's broadcast: %.0f allocations, want 0 (not decoded)", n)
	}

	d.NotifyMsg(v2)
	if version() != 2 || c.seenBroadcast(v1) || !c.seenBroadcast(v2) {
		t.Fatalf("after a newer broadcast: version %d, old remembered %v, new %v; want 2, false, true",
			version(), c.seenBroadcast(v1), c.seenBroadcast(v2))
	}
	d.NotifyMsg(v1) // an old copy still changes nothing
	if version() != 2 {
		t.Fatalf("an old broadcast after a newer one: version %d, want 2", version())
	}

	r3, err := decodeRecord(v3)
	if err != nil {
		t.Fatal(err)
	}
	c.merge([]record{r3}, true) // by push/pull: no broadcast bytes
	if version() != 3 || c.seenBroadcast(v3) || c.seenBroadcast(v2) {
		t.Fatalf("after a push/pull: version %d, v3 remembered %v, v2 %v; want 3, false, false",
			version(), c.seenBroadcast(v3), c.seenBroadcast(v2))
	}
	d.NotifyMsg(v3)
	if !c.seenBroadcast(v3) {
		t.Fatal("the first broadcast copy of a push/pull record was not remembered")
	}

	d.NotifyLeave(mlNode("b", "10.0.0.2", memberlist.StateDead))
	c.mu.Lock()
	c.members["b"].since = time.Now().Add(-2 * c.reap)
	c.pruneAt = time.Time{}
	c.pruneLocked(time.Now())
	left := len(c.raw)
	c.mu.Unlock()
	if left != 0 || c.seenBroadcast(v3) {
		t.Errorf("after the member was forgotten: %d broadcasts remembered, want 0", left)
	}
}
