package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestMissingRecordAsked: a member alive here without a record (its
// broadcast died out before this node heard it) is asked for the record
// and answers, without waiting for a push/pull (pushed back an hour
// here); the old code left the member's services out until then.
func TestMissingRecordAsked(t *testing.T) {
	noPushPull := func(cfg *Config) { cfg.Memberlist.PushPullInterval = time.Hour }
	a := newNodeWith(t, "a", "want", 1, noPushPull)
	b := newNodeWith(t, "b", "want", 2, noPushPull)
	b.SetServices([]Service{{Name: "web", Port: 80}})
	join(t, a, b)
	has := func() error {
		for _, e := range a.Catalog() {
			if e.Node == "b" && len(e.Services) == 1 {
				return nil
			}
		}
		return fmt.Errorf("a's catalog has no record of b with its service: %+v", a.Catalog())
	}
	waitFor(t, "a has b's record", has)

	// Broadcasts of b's record run out, then a loses it, as if the
	// broadcast had never reached it.
	waitFor(t, "broadcast queues empty", func() error {
		if na, nb := a.bcast.NumQueued(), b.bcast.NumQueued(); na+nb > 0 {
			return fmt.Errorf("queued: a %d, b %d", na, nb)
		}
		return nil
	})
	a.mu.Lock()
	a.forgetLocked("b") // the record and the broadcast it came in (dedup.go)
	a.members["b"].since = time.Now().Add(-wantAfter)
	// In a running node an alive member lacks a record only from when
	// memberUp reports it (which clears recordsComplete), never because
	// a record went away; this test takes the record away itself.
	a.recordsComplete.Store(false)
	a.mu.Unlock()
	waitFor(t, "a asks b for its record and gets it", has)
}

// TestWantDecode: a record request carries a valid node name.
func TestWantDecode(t *testing.T) {
	b, err := encodeWant("node-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeWant(b); err != nil || got != "node-1" {
		t.Errorf("decodeWant: %q, %v; want node-1", got, err)
	}
	for _, bad := range [][]byte{b[:1], append([]byte{wireVersion, kindRecord}, b[2:]...), []byte{wireVersion, kindWant, '"', '"'}} {
		if _, err := decodeWant(bad); err == nil {
			t.Errorf("decodeWant(%q): no error", bad)
		}
	}
}

// TestNewMemberGreeted: a node that announces services sends its record
// to a member it has just learnt of, without waiting for broadcast or
// push/pull (both off here); a node without services sends nothing.
func TestNewMemberGreeted(t *testing.T) {
	quiet := func(cfg *Config) { cfg.Memberlist.PushPullInterval = time.Hour }
	a := newNodeWith(t, "a", "greet", 1, quiet)
	b := newNodeWith(t, "b", "greet", 2, quiet)
	b.SetServices([]Service{{Name: "web", Port: 80}})
	join(t, a, b)
	waitFor(t, "a has b's record", func() error {
		for _, e := range a.Catalog() {
			if e.Node == "b" && len(e.Services) == 1 {
				return nil
			}
		}
		return fmt.Errorf("no record of b with its service in %+v", a.Catalog())
	})
	waitFor(t, "broadcast queues empty", func() error {
		if na, nb := a.bcast.NumQueued(), b.bcast.NumQueued(); na+nb > 0 {
			return fmt.Errorf("queued: a %d, b %d", na, nb)
		}
		return nil
	})
	// b learns of a new member c (as if from gossip) at c's address: b
	// greets c with its record.
	c := newNodeWith(t, "c", "greet", 3, quiet)
	c.mu.Lock()
	c.members["b"] = &member{Member: Member{Name: "b", Addr: "127.0.0.1", Port: b.GossipPort(), State: stateAlive}, since: time.Now()}
	c.mu.Unlock()
	b.memberUp("c", "127.0.0.1", c.GossipPort(), time.Time{}, offerUnknown, false, true)
	// Well within wantAfter, so c's own request (want.go) cannot be what
	// brought the record.
	deadline := time.Now().Add(wantAfter / 2)
	for {
		c.mu.Lock()
		s, ok := c.records["b"]
		c.mu.Unlock()
		if ok && len(s.rec.Services) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("c has no record of b %s after b learnt of c", wantAfter/2)
		}
		time.Sleep(10 * time.Millisecond) // polling another node's state
	}
}

// TestAnnouncingMemberAskedOverStream: a node that learns of a member
// whose metadata says it announces services (metaServes), without its
// record, asks for it over a stream and gets the answer over a stream:
// c's packet path delivers nothing, push/pull is off, and b does not learn
// of c as new (no greeting). b answers also before it has heard of c at
// all, at the address c's request gives. c is joined to a third node, a,
// which knows nothing of b and announces nothing: memberlist asks for
// broadcasts, and so runs the check for missing records, only while it
// has someone to gossip to. The metadata is written out byte by byte, as
// a peer sends it. On the old code c asked by packet after wantAfter and
// b answered by packet, which c's busy packet handler would serve last,
// and b dropped a request from a node it did not know.
func TestAnnouncingMemberAskedOverStream(t *testing.T) {
	for _, bKnowsC := range []bool{true, false} {
		t.Run(fmt.Sprintf("b knows c %v", bKnowsC), func(t *testing.T) {
			quiet := func(cfg *Config) { cfg.Memberlist.PushPullInterval = time.Hour }
			b := newNodeWith(t, "b", "askstream", 2, quiet)
			b.SetServices([]Service{{Name: "web", Port: 80}})
			c := newNodeWith(t, "c", "askstream", 3, func(cfg *Config) {
				quiet(cfg)
				withPacketless(t)(cfg)
			})
			a := newNodeWith(t, "a", "askstream", 1, quiet)
			join(t, c, a)
			if bKnowsC {
				b.mu.Lock()
				b.members["c"] = &member{Member: Member{Name: "c", Addr: "127.0.0.1", Port: c.GossipPort(), State: stateAlive}, since: time.Now()}
				b.mu.Unlock()
			}
			// Version 2, started now (a young member: no wantOld
			// shortcut), and the flags byte with metaServes.
			meta := binary.BigEndian.AppendUint64([]byte{2}, uint64(time.Now().UnixNano()))
			meta = append(meta, 1)
			(&delegate{c: c}).NotifyJoin(&memberlist.Node{Name: "b", Addr: net.ParseIP("127.0.0.1"), Port: uint16(b.GossipPort()), Meta: meta})
			waitStoredRecord(t, c, "b")
		})
	}
}

// TestWantFromDecode: a kindWantFrom request carries a valid node name,
// address and port.
func TestWantFromDecode(t *testing.T) {
	good := wantFrom{Node: "node-1", Addr: "10.0.0.1", Port: 7946}
	b, err := encodeWantFrom(good)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeWantFrom(b); err != nil || got != good {
		t.Errorf("decodeWantFrom: %+v, %v; want %+v", got, err, good)
	}
	for _, bad := range []wantFrom{
		{Node: "", Addr: "10.0.0.1", Port: 7946},
		{Node: "n", Addr: "", Port: 7946},
		{Node: "n", Addr: "0.0.0.0", Port: 7946},
		{Node: "n", Addr: "fe80::1%eth0", Port: 7946},
		{Node: "n", Addr: "fe80::1", Port: 7946},
		{Node: "n", Addr: "224.0.0.251", Port: 7946},
		{Node: "n", Addr: "ff02::fb", Port: 7946},
		{Node: "n", Addr: "255.255.255.255", Port: 7946},
		{Node: "n", Addr: "10.0.0.1", Port: 0},
		{Node: "n", Addr: "10.0.0.1", Port: 65536},
	} {
		b, err := encodeWantFrom(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeWantFrom(b); err == nil {
			t.Errorf("decodeWantFrom(%+v): no error", bad)
		}
	}
	if _, err := decodeWantFrom(append([]byte{wireVersion, kindWant}, b[2:]...)); err == nil {
		t.Error("decodeWantFrom of a kindWant message: no error")
	}
}

// TestMissingAsksAnnouncingMembersFirst: an announcing member (metaServes)
// without a record is asked wantSettle after it came up, young as it is,
// and ahead of a full batch of old members; memberUp makes the check due
// then. A young member that does not announce still waits wantAfter.
func TestMissingAsksAnnouncingMembersFirst(t *testing.T) {
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.memberUp("self", "127.0.0.1", 7946, now, offerServices, false, true)
	for i := range wantBatch + 2 {
		c.memberUp(fmt.Sprintf("old%02d", i), "127.0.0.1", 7001+i, now.Add(-time.Hour), offerUnknown, false, true)
	}
	c.memberUp("young", "127.0.0.1", 7100, now, offerUnknown, false, true)
	c.memberUp("quiet", "127.0.0.1", 7102, now.Add(-2*time.Hour), offerNothing, false, true) // the oldest
	c.lastWant.Store(time.Now().UnixNano())
	c.memberUp("web", "127.0.0.1", 7101, now, offerServices, false, true)
	if due := time.Unix(0, c.lastWant.Load()).Add(wantCheck); due.After(time.Now().Add(wantSettle)) {
		t.Errorf("an announcing member without a record: next check due in %s, want within wantSettle", time.Until(due))
	}
	ask, serving := c.missing(time.Now().Add(wantSettle))
	if len(ask) != wantBatch || serving != 1 || ask[0].Name != "web" {
		var got []string
		for _, n := range ask {
			got = append(got, n.Name)
		}
		t.Fatalf("asked %v, %d announcing; want %d with web first, 1 announcing", got, serving, wantBatch)
	}
	for _, n := range ask {
		if n.Name == "young" || n.Name == "quiet" {
			t.Errorf("%s asked at wantSettle", n.Name)
		}
	}
	// A member whose record carries no services, old as it is, waits
	// wantQuiet; others are asked meanwhile.
	for _, at := range []time.Duration{wantAfter, wantAfter + wantEvery} {
		ask, _ := c.missing(time.Now().Add(at))
		for _, n := range ask {
			if n.Name == "quiet" {
				t.Errorf("quiet asked %s after it came up, before wantQuiet", at)
			}
		}
	}
	ask, _ = c.missing(time.Now().Add(wantQuiet))
	if !slices.ContainsFunc(ask, func(n *memberlist.Node) bool { return n.Name == "quiet" }) {
		t.Errorf("quiet not asked after wantQuiet")
	}
}

// TestMissingPutsOffNextCheck: while the only members without a record
// announce nothing (asked after wantQuiet), the check for missing records
// is put off until the first is due instead of walking the members every
// wantCheck; a member that announces, coming up, brings it back.
func TestMissingPutsOffNextCheck(t *testing.T) {
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c.memberUp("self", "127.0.0.1", 7946, time.Now(), offerNothing, false, true)
	c.memberUp("quiet", "127.0.0.1", 7001, time.Now(), offerNothing, false, true)
	now := time.Now()
	if ask, _ := c.missing(now); len(ask) != 0 {
		t.Fatalf("asked %d members at once, want none", len(ask))
	}
	due := func() time.Time { return time.Unix(0, c.lastWant.Load()).Add(wantCheck) }
	if got := due(); got.Before(now.Add(wantQuiet - time.Second)) {
		t.Errorf("next check in %s, want about wantQuiet (%s)", got.Sub(now), wantQuiet)
	}
	c.memberUp("web", "127.0.0.1", 7002, time.Now(), offerServices, false, true)
	if got := due(); got.After(time.Now().Add(wantSettle)) {
		t.Errorf("an announcing member came up: next check in %s, want within wantSettle", time.Until(got))
	}
}

// TestMetaFollowsServices: a node's metadata says whether its record
// carries services, also when it starts or stops announcing after Start
// (UpdateNode), and a member notes the change (NotifyUpdate); a member
// without the record is then asked at once, not after wantQuiet.
func TestMetaFollowsServices(t *testing.T) {
	quiet := func(cfg *Config) { cfg.Memberlist.PushPullInterval = time.Hour }
	a := newNodeWith(t, "a", "metaflag", 1, quiet)
	b := newNodeWith(t, "b", "metaflag", 2, quiet)
	join(t, a, b)
	offerOf := func(o offer) func() error {
		return func() error {
			a.mu.Lock()
			defer a.mu.Unlock()
			if m, ok := a.members["b"]; ok && m.offer == o {
				return nil
			}
			return fmt.Errorf("a's member b does not have offer %d", o)
		}
	}
	waitFor(t, "b announces nothing", offerOf(offerNothing))
	b.SetServices([]Service{{Name: "web", Port: 80}})
	waitFor(t, "b announces", offerOf(offerServices))
	b.SetServicesDown(nil, []Service{{Name: "web", Port: 80}})
	b.SetServices([]Service{{Name: "web", Port: 80}}) // no change of the flag: nothing sent
	b.SetServices(nil)
	waitFor(t, "b announces nothing again", offerOf(offerNothing))
}

// packetless is a transport whose packets never reach memberlist: only
// streams do, as when a node's packet handler is busy for seconds.
type packetless struct {
	*transport
	never chan *memberlist.Packet
}

func (p packetless) PacketCh() <-chan *memberlist.Packet { return p.never }

// withPacketless gives a node a packetless transport on loopback.
func withPacketless(t *testing.T) func(*Config) {
	return func(cfg *Config) {
		tr, err := newTransport("127.0.0.1", 0, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Memberlist.Transport = packetless{transport: tr, never: make(chan *memberlist.Packet)}
	}
}

// TestGreetingNotQueuedBehindPackets: the greeting reaches a member whose
// packet path delivers nothing (see greet: a packet's user message waits
// behind every other message of a forming cluster), so it cannot have come
// as a packet; push/pull is off and the member's own request would be
// answered by packet.
func TestGreetingNotQueuedBehindPackets(t *testing.T) {
	quiet := func(cfg *Config) { cfg.Memberlist.PushPullInterval = time.Hour }
	b := newNodeWith(t, "b", "greet", 2, quiet)
	b.SetServices([]Service{{Name: "web", Port: 80}})
	c := newNodeWith(t, "c", "greet", 3, func(cfg *Config) {
		quiet(cfg)
		withPacketless(t)(cfg)
	})
	c.mu.Lock()
	c.members["b"] = &member{Member: Member{Name: "b", Addr: "127.0.0.1", Port: b.GossipPort(), State: stateAlive}, since: time.Now()}
	c.mu.Unlock()
	b.memberUp("c", "127.0.0.1", c.GossipPort(), time.Time{}, offerUnknown, false, true)
	waitStoredRecord(t, c, "b")
}

// TestMissingWalkStopsWhenComplete: once every alive member has a record,
// the check for missing records does not walk the members again until a
// member without one comes up, and then that member is asked for it.
func TestMissingWalkStopsWhenComplete(t *testing.T) {
	c, err := New(Config{NodeName: "a", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.memberUp("a", "127.0.0.1", 7946, time.Time{}, offerUnknown, false, true)
	c.memberUp("b", "127.0.0.1", 7947, time.Time{}, offerUnknown, false, true)
	c.merge([]record{{Entry: Entry{Node: "b", Addr: "127.0.0.1", Version: 1}}}, false)
	if got, _ := c.missing(now.Add(wantAfter)); len(got) != 0 || !c.recordsComplete.Load() {
		t.Fatalf("b has its record: missing %v, complete %v; want none, true", got, c.recordsComplete.Load())
	}
	c.memberUp("c", "127.0.0.1", 7948, time.Time{}, offerUnknown, false, true)
	if c.recordsComplete.Load() {
		t.Fatal("c came up without a record and recordsComplete is still set")
	}
	got, _ := c.missing(time.Now().Add(wantAfter))
	if len(got) != 1 || got[0].Name != "c" {
		t.Fatalf("missing = %v, want c", got)
	}
	if c.recordsComplete.Load() {
		t.Error("recordsComplete set while c has no record")
	}
}

// TestMissingAsksOldMembersAtOnce: a member without a record that started
// wantOld or more ago (its metadata's start time) is asked wantSettle
// after it is learnt of, not wantAfter later: its own broadcast ended long
// ago. A
// member just started, or one without a start time, waits wantAfter as
// before. When more are due than a batch holds, the oldest go first.
func TestMissingAsksOldMembersAtOnce(t *testing.T) {
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	names := func(ns []*memberlist.Node, _ int) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return out
	}
	now := time.Now()
	c.memberUp("self", "127.0.0.1", 7946, now, offerUnknown, false, true)
	c.lastWant.Store(now.UnixNano())
	c.memberUp("young", "127.0.0.1", 7001, now.Add(-wantOld/2), offerUnknown, false, true)
	c.memberUp("legacy", "127.0.0.1", 7002, time.Time{}, offerUnknown, false, true)
	if c.lastWant.Load() != now.UnixNano() {
		t.Fatal("members that just started moved the next check")
	}
	c.memberUp("old", "127.0.0.1", 7003, now.Add(-time.Minute), offerUnknown, false, true)
	if due := time.Unix(0, c.lastWant.Load()).Add(wantCheck); due.After(time.Now().Add(wantSettle)) {
		t.Errorf("an old member without a record: next check due in %s, want within wantSettle", time.Until(due))
	}
	if got := names(c.missing(time.Now())); len(got) != 0 {
		t.Errorf("asked %v before wantSettle: its record may be in the same push/pull", got)
	}
	if got := names(c.missing(time.Now().Add(wantSettle))); !slices.Equal(got, []string{"old"}) {
		t.Errorf("at once: asked %v, want [old]", got)
	}
	got := names(c.missing(time.Now().Add(wantAfter)))
	slices.Sort(got)
	if !slices.Equal(got, []string{"legacy", "young"}) {
		t.Errorf("after wantAfter: asked %v, want [legacy young] (old was asked within wantEvery)", got)
	}

	// More due than one batch: the oldest first, unknown start times last.
	d, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	d.memberUp("self", "127.0.0.1", 7946, now, offerUnknown, false, true)
	d.memberUp("legacy", "127.0.0.1", 7000, time.Time{}, offerUnknown, false, true)
	var want []string
	for i := range wantBatch + 4 {
		name := fmt.Sprintf("n%02d", i)
		d.memberUp(name, "127.0.0.1", 7001+i, now.Add(-time.Hour+time.Duration(i)*time.Second), offerUnknown, false, true)
		if i < wantBatch {
			want = append(want, name)
		}
	}
	if got := names(d.missing(time.Now().Add(wantAfter))); !slices.Equal(got, want) {
		t.Errorf("batch: asked %v, want the %d oldest %v", got, wantBatch, want)
	}
	got = names(d.missing(time.Now().Add(wantAfter)))
	if len(got) != 5 || !slices.Contains(got, "legacy") {
		t.Errorf("the next check asked %v, want the 4 younger and legacy", got)
	}
	if got := names(d.missing(time.Now().Add(wantAfter))); len(got) != 0 {
		t.Errorf("the third check asked %v again within wantEvery", got)
	}
	got = names(d.missing(time.Now().Add(wantAfter + wantEvery)))
	if len(got) != wantBatch || got[0] != "n00" {
		t.Errorf("after wantEvery: asked %v, want n00 first", got)
	}
}

// waitStoredRecord waits until c stores node's record with its one
// service. It reads the stored records, not Catalog, so that a member
// still suspect or refused counts too.
func waitStoredRecord(t *testing.T, c *Cluster, node string) {
	t.Helper()
	waitFor(t, "c has "+node+"'s record", func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if s, ok := c.records[node]; ok && len(s.rec.Services) == 1 {
			return nil
		}
		return errors.New("no record of " + node)
	})
}
