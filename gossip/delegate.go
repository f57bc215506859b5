package gossip

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate adapts a Cluster to memberlist's callbacks, so those methods stay
// off Cluster's exported API. memberlist calls them from its own goroutines,
// sometimes with its node lock held (the EventDelegate methods): they take
// c.mu briefly, never call back into memberlist, and never block.
type delegate struct {
	c *Cluster
}

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.NamedBroadcast   = (*broadcast)(nil)
)

// NodeMeta returns this node's start time (see encodeMeta), which decides
// who keeps a name two nodes claim (see NotifyConflict), and whether its
// record carries services (metaServes). The catalog does not travel here
// but in broadcasts and push/pull state, because metadata is capped at
// memberlist.MetaMaxSize (512 bytes). memberlist asks for it in Create and
// in UpdateNode, which SetServicesDown calls when metaServes changes.
func (d *delegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	d.c.served = d.c.servesLocked()
	serves := d.c.served
	d.c.mu.Unlock()
	return encodeMeta(d.c.started, serves)
}

// The first byte of the node metadata is its version. Version 1 (up to
// session 9) is the start time alone; version 2 adds a flags byte. A peer
// whose meta is neither (an older release sends none) has no known start
// time. A release that knows only version 1 reads a version-2 meta as
// none: during an upgrade it treats the new nodes as an older release
// (holdsName's legacyNameWindow; asked for records after wantAfter).
const (
	metaVersion1 = 1
	metaVersion  = 2
	// metaServes: the node's record carries services (up or down). A
	// node that learns of such a member without its record asks for it
	// at once and over a stream; one without asks a member that carries
	// none only after wantQuiet (want.go).
	metaServes = 1 << 0
	// metaGreets: the node knows kindGreet, a greeting with the greeter's
	// gossip address (greet.go). An announcing node greets a member
	// without it with the plain record, which older releases read.
	metaGreets = 1 << 1
	// metaStateFlate: the node reads kindStateFlate, a push/pull state
	// compressed with DEFLATE (wire.go). A node sends one only while
	// every alive member has it (Cluster.plainAlive).
	metaStateFlate = 1 << 2
)

// encodeMeta is the node metadata: metaVersion, the start time in Unix
// nanoseconds, big-endian, and the flags byte (10 bytes), which always has
// metaGreets and metaStateFlate.
func encodeMeta(started time.Time, serves bool) []byte {
	flags := byte(metaGreets | metaStateFlate)
	if serves {
		flags |= metaServes
	}
	b := binary.BigEndian.AppendUint64([]byte{metaVersion}, uint64(started.UnixNano()))
	return append(b, flags)
}

// nodeMeta is what decodeMeta reads from a member's metadata.
type nodeMeta struct {
	started int64 // Unix nanoseconds
	offer   offer // offerUnknown for version 1
	greets  bool  // metaGreets; false for version 1
	flate   bool  // metaStateFlate; false for version 1
}

// offer is what a member's metadata says of its record.
type offer uint8

const (
	offerUnknown  offer = iota // version 1 or none: an older release
	offerNothing               // version 2 without metaServes
	offerServices              // version 2 with metaServes
)

// decodeMeta returns what meta carries; ok is false if it carries no start
// time. It reads both versions.
func decodeMeta(meta []byte) (nm nodeMeta, ok bool) {
	switch {
	case len(meta) == 9 && meta[0] == metaVersion1:
	case len(meta) == 10 && meta[0] == metaVersion:
		nm.offer = offerNothing
		if meta[9]&metaServes != 0 {
			nm.offer = offerServices
		}
		nm.greets = meta[9]&metaGreets != 0
		nm.flate = meta[9]&metaStateFlate != 0
	default:
		return nodeMeta{}, false
	}
	nm.started = int64(binary.BigEndian.Uint64(meta[1:9]))
	return nm, true
}

// holdsName reports whether other, claiming the name of self (this node),
// rightly holds it: it started earlier, or at the same nanosecond from a
// lower address. Both nodes get the same answer the other way round, so
// exactly one of two twins gives way, whichever heard of the other first,
// at any time. A peer without a start time (an older release) is taken to
// hold the name only while this node is younger than legacyNameWindow:
// that release gave way only in its own first 30 s, so an established
// node must not give way to it either, or both would stop. Start times are
// wall clocks of two hosts: clocks skewed by more than the gap between the
// two starts pick the wrong twin, but still only one.
func holdsName(self, other *memberlist.Node) bool {
	me, ok := decodeMeta(self.Meta)
	if !ok {
		return true // cannot happen: NodeMeta always sends one
	}
	them, ok := decodeMeta(other.Meta)
	if !ok {
		return time.Since(time.Unix(0, me.started)) < legacyNameWindow
	}
	mine, theirs := me.started, them.started
	if theirs != mine {
		return theirs < mine
	}
	sa, _ := netip.AddrFromSlice(self.Addr)
	oa, _ := netip.AddrFromSlice(other.Addr)
	return netip.AddrPortFrom(oa.Unmap(), other.Port).Compare(netip.AddrPortFrom(sa.Unmap(), self.Port)) < 0
}

// NotifyMsg merges one broadcast record. memberlist may reuse b after the
// call; decodeRecord copies what it keeps.
func (d *delegate) NotifyMsg(b []byte) {
	var kind byte
	if len(b) > 1 {
		kind = b[1]
	}
	switch kind {
	case kindRefused:
		node, err := decodeRefused(b)
		if err != nil {
			d.dropped("refused message", b, err)
			return
		}
		d.c.refusedHint(node)
	case kindWantFrom:
		w, err := decodeWantFrom(b)
		if err != nil {
			d.dropped("record request", b, err)
			return
		}
		d.c.answerWantFrom(w)
	case kindGreet:
		g, err := decodeGreeting(b)
		if err != nil {
			d.dropped("greeting", b, err)
			return
		}
		d.c.greeted(g)
	case kindWant:
		from, err := decodeWant(b)
		if err != nil {
			d.dropped("record request", b, err)
			return
		}
		d.c.answerWant(from)
	default:
		if d.c.seenBroadcast(b) {
			return // a copy of a stored record's broadcast (dedup.go)
		}
		r, err := decodeRecord(b)
		if err != nil {
			d.dropped("broadcast", b, err)
			return
		}
		d.c.mergeRaw([]record{r}, b, false)
	}
}

// dropped logs, at debug level, a message NotifyMsg could not decode:
// network input, so never louder, but for a record too far ahead of this
// node's clock (see clockBehind).
func (d *delegate) dropped(what string, b []byte, err error) {
	d.c.log.Debug("dropping malformed "+what, "bytes", len(b), "err", err)
	d.clockBehind(err)
}

// clockBehind warns, at most once per log interval, when err says a
// peer's record is more than maxVersionAhead ahead of this node's clock.
// Versions are wall-clock based, so a node whose clock is a day or more
// behind (a board without a real-time clock before NTP) drops every record
// its peers send and sees no catalog: the operator must hear why. A
// hostile sender can trigger no more than this rate-limited line.
func (d *delegate) clockBehind(err error) {
	if !errors.Is(err, errClockAhead) {
		return
	}
	if ok, suppressed := d.c.logLimit.allow("clock", time.Now()); ok {
		d.c.log.Warn("dropping a peer's record dated more than a day ahead of this node's clock: is this node's clock wrong? (no catalog from peers until it is right)",
			"err", err, "suppressed", suppressed)
	}
}

// GetBroadcasts hands memberlist the queued records that fit in limit.
// memberlist calls it on every gossip tick, which also drives the scan
// for suspect members (see scanSuspects).
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	now := time.Now()
	d.c.scanSuspects(now)
	d.c.askMissing(now)
	return d.c.bcast.GetBroadcasts(overhead, limit)
}

// LocalState returns this node's view of the catalog for a push/pull,
// compressed (kindStateFlate) when every alive member reads that. A join's
// state is always plain: memberlist does not say who the peer is, and in a
// join it may be a node this one has never heard of, perhaps an older
// release (the joiner knows no member yet; the node it joins asks for
// this state before it merges the joiner). A join's state also carries
// the records of dead and left members (pushState).
//
// Outside a join the same order leaves a narrow gap (found in review):
// an older node this one does not list alive (it joined through another
// member and its alive message has not arrived yet, or this node has just
// marked it dead while it still lists this one) can get a compressed
// state in a periodic push/pull. It drops it and misses that one round of
// anti-entropy; broadcasts and the next round still reach it. It exists
// only while older releases run in the cluster.
func (d *delegate) LocalState(join bool) []byte {
	rs, flate := d.c.pushState(join)
	encode := encodeState
	if !join && flate {
		encode = encodeStateFlate
	}
	b, err := encode(rs)
	if err != nil {
		d.c.log.Error("encoding push/pull state", "err", err)
		return nil
	}
	if len(b) > maxStateMsg {
		// Every push/pull hits this until the catalog shrinks.
		if ok, suppressed := d.c.logLimit.allow("state size", time.Now()); ok {
			d.c.log.Error("push/pull state exceeds the limit peers accept; catalog will not converge",
				"bytes", len(b), "limit", maxStateMsg, "suppressed", suppressed)
		}
	}
	return b
}

// MergeRemoteState merges a peer's push/pull state. memberlist calls it
// after it merged the peer's membership, so NotifyJoin has already run for
// the nodes listed.
func (d *delegate) MergeRemoteState(b []byte, join bool) {
	rs, err := decodeState(b)
	if err != nil {
		d.c.log.Debug("dropping malformed push/pull state", "bytes", len(b), "join", join, "err", err)
		d.clockBehind(err)
		return
	}
	d.c.merge(rs, true)
}

// NotifyJoin records n as alive. memberlist calls it when a node becomes
// alive, also when a dead node comes back from a new address. Called with
// memberlist's node lock held.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	var started time.Time
	nm, ok := decodeMeta(n.Meta)
	if ok {
		started = time.Unix(0, nm.started)
	}
	d.c.memberUp(n.Name, n.Addr.String(), int(n.Port), started, nm.offer, nm.greets, nm.flate)
}

// NotifyUpdate notes what n's metadata now says of its record and whether
// it reads a compressed push/pull state (a node restarted into another
// release may come back as an update, not a join): memberlist calls it only
// when an alive node's metadata changes, which NodeMeta's does when the
// node starts or stops announcing services. (It rejects an
// address change of an alive node as a conflict.) Called with
// memberlist's node lock held.
func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	nm, _ := decodeMeta(n.Meta)
	d.c.memberMeta(n.Name, nm.offer, nm.flate)
}

// NotifyLeave records n as dead or left. Called with memberlist's node lock
// held.
//
// n.State cannot tell the two apart: memberlist v0.7.0 keeps the state in
// nodeState.State, which shadows the embedded Node.State, and hands out
// &nodeState.Node, whose State is never set (always StateAlive). So
// "left" comes from the record the node broadcast in Leave.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.c.memberDown(n.Name)
}

// NotifyAlive is called for every alive message and every node of a
// push/pull, before memberlist takes the node in; an error makes it ignore
// the node. A name that breaks the node name rule is refused: memberlist
// carries any string, and a member's name reaches logs, the members table
// (tab-separated text) and the live page, where a tab, a newline or an
// escape sequence would forge rows or drive a terminal. Every ambassador
// node checks its own name at start, so only a foreign or hostile sender
// is refused. memberlist logs the refusal (rate-limited by logwriter).
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	return checkName("member", n.Name)
}

// NotifyConflict is called when an alive message names a known node at
// another address. memberlist then keeps the node it knew and ignores the
// message. Only a conflict over this node's own name concerns us, and
// memberlist reports it on both sides: to the node that holds the name and
// to the newcomer claiming it. Only when the other node rightly holds the
// name (holdsName) does it go to Conflicts; otherwise this node is the
// holder, and the newcomer, hearing of the same conflict, gives way.
// Called with memberlist's node lock held.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name != d.c.cfg.NodeName {
		return // two other nodes; memberlist logs it
	}
	m := Member{Name: other.Name, Addr: other.Addr.String(), Port: int(other.Port), State: stateAlive}
	if !holdsName(existing, other) {
		if ok, suppressed := d.c.logLimit.allow("name claimed", time.Now()); ok {
			d.c.log.Warn("a node that started later claims this node's name; it should give way",
				"peer", net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)), "suppressed", suppressed)
		}
		return
	}
	d.c.nameConflict(m)
}

// broadcast is one queued record. Named by node, so a newer record for the
// same node replaces an older one still in the queue; records are only
// queued when they are newer than what this node had, so the replacement is
// always an upgrade.
type broadcast struct {
	node string
	msg  []byte
}

func (b *broadcast) Name() string    { return b.node }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.node
}
