package gossip

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// Asking a member for its record.
//
// A node's record reaches the others by broadcast (re-sent by each node
// that merges it, a few times each) and by push/pull, which carries the
// records of the peer's alive members. A node that joins after a record's
// broadcast has died out, through a peer that lacked it too (both new),
// learns of the member from memberlist's alive messages but gets its
// record only at the next push/pull with a peer that has it: 60 s apart at
// 100 nodes. In a 100-host lab started together, hosts knew the announcing
// node for seconds before they could route to it (session 5). So a member
// alive for wantAfter without a record is asked for it directly, with one
// small UDP message (kindWant), at most once per wantEvery, and answers
// with its own record the same way.
//
// A member that started wantOld or more before this node learnt of it (its
// start time travels in its metadata) is asked wantSettle after it came
// up, not wantAfter: its own
// broadcast of its record ended long ago, so waiting wantAfter only delays
// it. That is how a node that starts late in a cluster forming around it
// meets the announcing node: through peers as new as itself, which know
// the member but not (yet) its record. In a 100-host lab debug run the last
// host knew the announcing node 1.7 s before it had its record (session
// 7); the request, after wantAfter and behind up to 90 other members
// without a record in map order, came later than the announcer's
// greeting. Old members are asked first, oldest first.
//
// A member whose metadata says its record carries services (metaServes) is
// asked wantSettle after this node learnt of it, whatever its age, before
// all others, and over a stream; it answers over a stream too. A packet's
// user message waits on the receiver behind every alive, suspect and dead
// message and newest first (see greet), and while 100 hosts formed a
// cluster at one instant both the request and the answer queued like the
// greeting did: in a debug run (session 9) the last hosts knew the
// announcing node 0.5-2.2 s before they listened for its service, which
// came only with the greeting, once the announcing node learnt of them.
// Only announcing members are asked this way, so a forming cluster opens
// about one stream per node and announcing node, not one per pair. Such a
// request (kindWantFrom) also says where the asker listens, because the
// announcing node often has not heard of it yet: in a debug run of a
// 100-host start (session 10) hosts knew the announcing node 1-3 s before
// it knew them, and it could not answer a request by name alone (it
// dropped them), so they waited for its greeting. It answers an asker it
// does not know at most once per wantEvery per address, and at most
// maxLogKeys addresses share that budget (limiter).
//
// A member whose metadata says its record carries no services (version 2
// without metaServes) is asked only wantQuiet after it came up: there is
// nothing to route to in that record, push/pull brings it meanwhile, and
// while 100 hosts started at one instant every node asked every other
// node and answered each: the requests alone were a tenth of all the CPU
// the nodes spent in their first 12 s (profile, session 10), on a box
// whose two cores were the bottleneck. If the member starts announcing,
// its metadata says so (NotifyUpdate) and it is asked at once.
//
// A member that comes back is asked too, though this node holds a record
// of it. When a partition heals without a join, memberlist holds the
// member alive again once it refuted this side's suspicion or dead
// message, but what it sent meanwhile (pushSelf, the broadcast of a new
// record) was lost, and this node showed its old record, hidden while it
// was dead, until a push/pull with a node that had the new one: 30 s to
// minutes (session 20 review). So when memberlist holds a member alive
// again after holding it dead, left (memberUp) or suspect (applySuspects),
// the member is asked recheckAfter later, once, as for a missing record,
// unless a newer record of it arrived by then (a restarted node sends its
// new one itself) or neither its record nor its metadata carries services
// (nothing to route to is wrong; push/pull brings the rest). It costs one
// small request per member coming back, at most one per wantEvery.
const (
	wantAfter = time.Second
	wantOld   = 2 * time.Second
	wantEvery = 5 * time.Second
	// wantBatch bounds the requests one node sends per check, and
	// wantCheck is how often it checks (from the gossip tick).
	wantBatch = 16
	wantCheck = 500 * time.Millisecond
	// wantSettle: an old member is asked no sooner than this after it
	// came up. memberlist reports the members of a push/pull before it
	// hands over the records that came with them, so a check in between
	// would ask for records that are about to arrive.
	wantSettle = 100 * time.Millisecond
	// wantQuiet: a member whose record carries no services is asked
	// after this, by when push/pull has almost surely brought the record:
	// memberlist's LAN interval is 30 s, scaled to 90 s at 100 nodes, and
	// a node also takes part in the push/pulls others start. With 30 s,
	// the requests of a 100-host start (about 99 per node) fell in the
	// scale lab's idle window, which should see a node at rest; by 3 min
	// push/pull should have brought most of those records.
	wantQuiet = 3 * time.Minute
	// recheckAfter: a member that came back is asked this long after,
	// so that a record already on its way (a restarted node's pushSelf
	// and broadcast) makes the request needless.
	recheckAfter = wantAfter
)

// recheckLocked notes that member name, m, came back at now (see above):
// missing asks it for its record recheckAfter later unless a newer one
// arrives first. Nothing is noted for this node, a member without a
// record here (missing asks it anyway), or one whose record and
// metadata both carry no services. c.mu must be held.
func (c *Cluster) recheckLocked(name string, m *member, now time.Time) {
	s, ok := c.records[name]
	if name == c.self.Node || !ok || (m.offer == offerNothing && len(s.rec.Services) == 0 && len(s.rec.Down) == 0) {
		return
	}
	m.recheckAt, m.recheckVersion = now, s.rec.Version
	c.recordsComplete.Store(false) // askMissing must look again
	c.wantBy(m.recheckDue())
}

// recheckDue is when m, noted by recheckLocked, may be asked:
// recheckAfter after it came back, and not within wantEvery of the last
// request.
func (m *member) recheckDue() time.Time {
	at := m.recheckAt.Add(recheckAfter)
	if !m.wantAt.IsZero() {
		at = later(at, m.wantAt.Add(wantEvery))
	}
	return at
}

func encodeWant(node string) ([]byte, error) { return encode(kindWant, node) }

// wantFrom is a kindWantFrom request: the asking node and its gossip
// address, to answer at before memberlist reports it.
type wantFrom struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
	Port int    `json:"port"`
}

func encodeWantFrom(w wantFrom) ([]byte, error) { return encode(kindWantFrom, w) }

// decodeWantFrom decodes a kindWantFrom message and checks its fields.
func decodeWantFrom(b []byte) (wantFrom, error) {
	var w wantFrom
	if err := decode(b, kindWantFrom, maxRecordMsg, &w); err != nil {
		return wantFrom{}, err
	}
	if err := checkName("node", w.Node); err != nil {
		return wantFrom{}, fmt.Errorf("%w: want from: %w", errDecode, err)
	}
	// The answer to a node not yet a member goes where the request says.
	if err := checkGossipAddr(w.Addr, w.Port); err != nil {
		return wantFrom{}, fmt.Errorf("%w: want from %q: %w", errDecode, w.Node, err)
	}
	return w, nil
}

// checkGossipAddr checks a gossip address a message gives, to send to or
// join: a unicast address only, because a packet to a multicast or
// broadcast address would reach every host of the LAN, and a port.
func checkGossipAddr(addr string, port int) error {
	if a, err := netip.ParseAddr(addr); err != nil || !(a.IsGlobalUnicast() || a.IsLoopback()) || a.Zone() != "" {
		return fmt.Errorf("address %q is not a unicast or loopback IP without a zone", addr)
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("port %d is not in 1..65535", port)
	}
	return nil
}

// decodeWant decodes a kindWant message: the asking node's name.
func decodeWant(b []byte) (string, error) {
	var node string
	if err := decode(b, kindWant, maxRecordMsg, &node); err != nil {
		return "", err
	}
	if err := checkName("node", node); err != nil {
		return "", fmt.Errorf("%w: want from: %w", errDecode, err)
	}
	return node, nil
}

// askMissing asks alive members without a record for theirs (see above).
// Called from GetBroadcasts on every gossip tick; it checks at most once
// per wantCheck and sends from a goroutine Shutdown waits for, so it
// never calls into memberlist from memberlist's own callback.
func (c *Cluster) askMissing(now time.Time) {
	if c.recordsComplete.Load() {
		return // every alive member's record is here: nothing to walk
	}
	last := c.lastWant.Load()
	if now.UnixNano()-last < int64(wantCheck) || !c.lastWant.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	ask, serving := c.missing(now)
	if len(ask) == 0 {
		return
	}
	if serving > 0 {
		if b, err := encodeWantFrom(c.selfWant()); err == nil {
			c.goSend(ask[:serving], b, true, "ask an announcing member for its record")
		}
	}
	if serving < len(ask) {
		if b, err := encodeWant(c.cfg.NodeName); err == nil {
			c.goSend(ask[serving:], b, false, "ask for a record")
		}
	}
}

// missing returns the alive members that have been alive for
// wantAfter (old members and announcing ones: wantSettle; those that
// announce nothing: wantQuiet), have no record
// here and were not asked within wantEvery, and those that came back
// recheckAfter ago (recheckLocked), at most wantBatch, announcing
// members first (serving says how many), then oldest first, and notes them
// as asked. It takes c.mu. When every alive
// member has a record it sets recordsComplete, so that askMissing stops
// walking the members (on every node of a 100-host lab, a tenth of its
// idle CPU went to this walk, twice a second); memberUp, the only way a
// member without a record appears, clears it. When none is due before a
// later check, it moves the next check to when the first one is
// (wantBy): members that announce nothing wait wantQuiet, and walking
// them twice a second meanwhile would cost what recordsComplete saves.
func (c *Cluster) missing(now time.Time) (ask []*memberlist.Node, serving int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var due []*member
	var next time.Time // the first member not due yet is due then
	complete := true
	for name, m := range c.members {
		if name == c.self.Node || m.State != stateAlive {
			continue
		}
		at := m.dueAt()
		if s, ok := c.records[name]; ok {
			if m.recheckAt.IsZero() {
				continue
			}
			if s.rec.Version > m.recheckVersion {
				m.recheckAt = time.Time{} // a newer record came: nothing to ask
				continue
			}
			at = m.recheckDue()
		}
		complete = false
		if now.Before(at) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		due = append(due, m)
		if m.offer == offerServices {
			serving++
		}
	}
	c.recordsComplete.Store(complete)
	if len(due) <= wantBatch && !next.IsZero() && next.Sub(now) > wantCheck {
		c.lastWant.Store(next.Add(-wantCheck).UnixNano()) // see above; wantBy may move it back
	}
	if len(due) > wantBatch || serving > 0 && serving < len(due) {
		// Only while more are due than one batch holds, which happens
		// while a cluster forms, or announcing members are among them,
		// not on every check.
		slices.SortFunc(due, compareWant)
		due = due[:min(len(due), wantBatch)]
		serving = min(serving, len(due))
	}
	ask = make([]*memberlist.Node, 0, len(due))
	for _, m := range due {
		m.wantAt, m.recheckAt = now, time.Time{}
		ask = append(ask, &memberlist.Node{Name: m.Name, Addr: net.ParseIP(m.Addr), Port: uint16(m.Port)})
	}
	return ask, serving
}

// wantBy makes the check for missing records due at at, unless it is due
// sooner.
func (c *Cluster) wantBy(at time.Time) {
	due := at.Add(-wantCheck).UnixNano()
	for {
		last := c.lastWant.Load()
		if last <= due || c.lastWant.CompareAndSwap(last, due) {
			return
		}
	}
}

// dueAt is when m, alive without a record, may be asked for it (see the
// top of this file): wantSettle after it came up if its record carries
// services, wantQuiet if it carries none, and a member of an older
// release wantAfter, or wantSettle once it is old; and not within
// wantEvery of the last request.
func (m *member) dueAt() time.Time {
	var at time.Time
	switch m.offer {
	case offerServices:
		at = m.since.Add(wantSettle)
	case offerNothing:
		at = m.since.Add(wantQuiet)
	default:
		at = m.since.Add(wantAfter)
		if !m.started.IsZero() {
			if old := m.started.Add(wantOld); old.Before(at) {
				at = later(old, m.since.Add(wantSettle))
			}
		}
	}
	if !m.wantAt.IsZero() {
		at = later(at, m.wantAt.Add(wantEvery))
	}
	return at
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// compareWant orders members to ask: announcing members first, then by
// start time, oldest first; those without one (older releases) last.
func compareWant(a, b *member) int {
	switch {
	case (a.offer == offerServices) != (b.offer == offerServices):
		return cmp.Compare(btoi(b.offer == offerServices), btoi(a.offer == offerServices))
	case a.started.IsZero() || b.started.IsZero():
		return cmp.Compare(btoi(a.started.IsZero()), btoi(b.started.IsZero()))
	default:
		return a.started.Compare(b.started)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// answerWant sends this node's record to member from, which asked for it
// (kindWant), at most once per wantEvery per asker, so a peer cannot make
// it send more often than it may ask. A node that announces services
// answers over a stream (see the top of this file): it is the record the
// asker waits for to route, and few nodes announce. A member held dead or
// left here is answered too, at the address memberlist had for it: after
// a partition it may list this node again (and ask, recheckLocked) while
// this node still holds it dead, for as long as no message of its
// refutation reaches this node, up to a push/pull.
func (c *Cluster) answerWant(from string) {
	now := time.Now()
	c.mu.Lock()
	m, ok := c.members[from]
	send := ok && from != c.self.Node && !c.self.Left && now.Sub(m.answeredAt) >= wantEvery
	var to *memberlist.Node
	var r record
	if send {
		m.answeredAt = now
		to = &memberlist.Node{Name: from, Addr: net.ParseIP(m.Addr), Port: uint16(m.Port)}
		r = c.self.clone()
	}
	c.mu.Unlock()
	if !send {
		return
	}
	b, err := encodeRecord(r)
	if err != nil || len(b) > c.maxBcast {
		return // too large for a packet: push/pull carries it
	}
	c.goSend([]*memberlist.Node{to}, b, len(r.Services) > 0, "answer a record request")
}

// selfWant is this node's kindWantFrom request: its name and the address
// memberlist advertises.
func (c *Cluster) selfWant() wantFrom {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := wantFrom{Node: c.self.Node}
	if m, ok := c.members[c.self.Node]; ok {
		w.Addr, w.Port = m.Addr, m.Port
	}
	return w
}

// answerWantFrom answers a kindWantFrom request: as answerWant when the
// asker is a member here, else, if this node announces services, at the
// address the request gives (see the top of this file).
func (c *Cluster) answerWantFrom(w wantFrom) {
	c.mu.Lock()
	_, known := c.members[w.Node]
	send := !known && w.Node != c.self.Node && c.servesLocked()
	var r record
	if send {
		r = c.self.clone()
	}
	c.mu.Unlock()
	if known {
		c.answerWant(w.Node)
		return
	}
	if !send {
		return
	}
	to := netip.AddrPortFrom(netip.MustParseAddr(w.Addr), uint16(w.Port)) // checked in decodeWantFrom
	if ok, _ := c.wantLimit.allow(to.String(), time.Now()); !ok {
		return
	}
	b, err := encodeRecord(r)
	if err != nil || len(b) > c.maxBcast {
		return // too large for a packet: push/pull carries it
	}
	c.goSend([]*memberlist.Node{{Name: w.Node, Addr: net.IP(to.Addr().AsSlice()), Port: to.Port()}}, b, true, "answer a record request")
}

// goSend sends b to each of to from a goroutine that Shutdown waits for:
// over a stream if reliable (a packet when the stream fails), else as a
// packet, best-effort; what names the message in the debug line of a
// failed send.
func (c *Cluster) goSend(to []*memberlist.Node, b []byte, reliable bool, what string) {
	c.goWithMemberlist(func(ml *memberlist.Memberlist) {
		for _, n := range to {
			if reliable {
				err := ml.SendReliable(n, b)
				if err == nil {
					continue
				}
				c.log.Debug(what+" over a stream", "peer", n.Name, "err", err)
			}
			if err := ml.SendBestEffort(n, b); err != nil {
				c.log.Debug(what, "peer", n.Name, "err", err)
			}
		}
	})
}

// goWithMemberlist runs send from a goroutine that Shutdown waits for,
// unless the cluster has not started, has left or is shut down: a send
// after Leave would announce a node that said goodbye. It reports whether
// it started send.
func (c *Cluster) goWithMemberlist(send func(*memberlist.Memberlist)) bool {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	ml := c.ml
	if ml == nil || c.closed || c.left {
		return false
	}
	c.checks.Go(func() { send(ml) })
	return true
}
