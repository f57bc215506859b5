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
)

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
		return fmt.Errorf("address %q", addr)
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("port %d", port)
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
// here and were not asked within wantEvery, at most wantBatch, announcing
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
		if _, ok := c.records[name]; ok {
			continue
		}
		complete = false
		if at := m.dueAt(); now.Before(at) {
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
		m.wantAt = now
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
// asker waits for to route, and few nodes announce.
func (c *Cluster) answerWant(from string) {
	now := time.Now()
	c.mu.Lock()
	m, ok := c.members[from]
	send := ok && from != c.self.Node && m.State == stateAlive && !c.self.Left && now.Sub(m.answeredAt) >= wantEvery
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

// greet sends r, this node's record, to a member it has just learnt of,
// when this node announces services: the member can route to them at
// once instead of waiting for the record's broadcast or a push/pull. In
// a lab of 25 hosts started within 100ms, hosts forwarded the announcing
// node's service up to a second after their start without it (session
// 5); it costs one message per new member, and only announcing nodes send.
//
// It goes over a stream (memberlist's SendReliable), not a packet. A
// receiver hands every packet's user messages to one goroutine, behind
// all alive, suspect and dead messages and newest first (memberlist's
// packetHandler), so while a cluster forms, a greeting that arrived early
// waits behind every record relayed after it: in a 100-host lab started
// at one instant, hosts listened for the announced service 2.7-3.9 s after
// the announcing node had greeted them (session 9). A stream's message is
// handled at once by the goroutine that reads it. A failed stream falls
// back to a packet.
//
// To a member whose metadata says it knows kindGreet (metaGreets), the
// record goes with this node's gossip address, so that a member that
// does not list this node yet joins it (see greeted).
func (c *Cluster) greet(to *memberlist.Node, r record, greets bool) {
	b := c.greeting(r, greets)
	if b == nil {
		return // too large for a packet: push/pull carries it
	}
	c.goSend([]*memberlist.Node{to}, b, true, "greet a new member")
}

// Greeting the members learnt before this node announced.
//
// memberUp greets only while this node's record carries services, and a
// service is announced once its first health check passed: in a 25-host
// lab started at one instant the announcing node learnt of 9 members in
// the 32 ms before, greeted none of them, and one of those listed it 164
// ms after the check passed (session 12, debug run). So when the record
// gains its first service, this node greets the members that came up
// within greetRecent, as memberUp would have. Members known for longer
// have had its alive message by gossip; the record reaches every member
// anyway (pushSelf, broadcast), and a member that lacks it asks (above).
const greetRecent = 2 * time.Second

// greetee is a member to greet and whether it knows kindGreet (and this
// node is not joining it).
type greetee struct {
	to     *memberlist.Node
	greets bool
}

// ungreetedLocked returns the alive members but this node that came up
// within greetRecent of now (see above). c.mu must be held.
func (c *Cluster) ungreetedLocked(now time.Time) []greetee {
	var out []greetee
	for name, m := range c.members {
		if name == c.self.Node || m.State != stateAlive || now.Sub(m.since) >= greetRecent {
			continue
		}
		out = append(out, greetee{
			to:     &memberlist.Node{Name: name, Addr: net.ParseIP(m.Addr), Port: uint16(m.Port)},
			greets: m.greets && !c.joiningLocked(m.Addr, m.Port),
		})
	}
	return out
}

// greeting encodes the greeting of r, this node's record: kindGreet with
// the address memberlist advertises when the receiver knows it (greets)
// and that address is known, else the plain record (kindRecord). It
// returns nil when neither fits in a gossip packet, the fallback of a
// failed stream.
func (c *Cluster) greeting(r record, greets bool) []byte {
	if greets {
		w := c.selfWant()
		if checkGossipAddr(w.Addr, w.Port) == nil {
			g := greetMsg{Record: r, Addr: w.Addr, Port: w.Port, Started: c.started.UnixNano()}
			if b, err := encodeGreeting(g); err == nil && len(b) <= c.maxBcast {
				return b
			}
		}
	}
	b, err := encodeRecord(r)
	if err != nil || len(b) > c.maxBcast {
		return nil
	}
	return b
}

// greetMsg is a kindGreet message: the greeting node's record, the
// address memberlist reaches it at, and its start time (Unix nanoseconds,
// as in its metadata), which the receiver, not listing it, has no other
// way to know (greetJoinDue).
type greetMsg struct {
	Record  record `json:"record"`
	Addr    string `json:"addr"`
	Port    int    `json:"port"`
	Started int64  `json:"started,omitempty"`
}

func encodeGreeting(g greetMsg) ([]byte, error) { return encode(kindGreet, g) }

// decodeGreeting decodes a kindGreet message and checks its record (as
// decodeRecord does) and address (as decodeWantFrom does). It retains no
// reference to b.
func decodeGreeting(b []byte) (greetMsg, error) {
	var g greetMsg
	if err := decode(b, kindGreet, maxRecordMsg, &g); err != nil {
		return greetMsg{}, err
	}
	if err := validateRecord(&g.Record, time.Now()); err != nil {
		return greetMsg{}, err
	}
	if err := checkGossipAddr(g.Addr, g.Port); err != nil {
		return greetMsg{}, fmt.Errorf("%w: greeting from %q: %w", errDecode, g.Record.Node, err)
	}
	return g, nil
}

// Joining a node that greeted this one (greeted).
//
// The announcing node greets every member it learns of, but a receiver
// that does not list it as a member yet keeps the record aside (pending)
// until memberlist's alive message about it arrives by random gossip,
// and routes nothing to it meanwhile. In a 25-host lab started at one
// instant the last hosts learnt of the announcing node 56-374 ms after it
// had learnt of them and greeted them (session 11): that wait was the tail
// of the first connection. So a node greeted by an announcing node it does
// not list joins it (memberlist's Join: one push/pull, which brings the
// greeter's alive state and promotes the pending record at once).
// It joins one address at most once per greetJoinEvery, at most
// maxLogKeys addresses share that budget (limiter), and at most
// maxGreetJoins joins run at a time: the greeting is network input, and
// the alive message comes by gossip anyway. The greeter pays one
// push/pull per greeted node that did not know it.
//
// Only a node that started at most greetJoinAge before the greeter joins
// it: a cluster forming, where both are new. A node that joins an
// established cluster learns every member from its own join and greets
// them all; every announcing member that did not list it yet would join
// it, each a push/pull of the whole state (213 KB at 1,000 simulated
// nodes, session 12): up to N of them at the newcomer. An established
// member gets the newcomer's alive message by gossip within a few rounds.
const (
	greetJoinEvery = wantEvery
	maxGreetJoins  = 4
	greetJoinAge   = 10 * time.Second
)

// greeted merges g.Record, a greeting (kindGreet), and joins its node when
// due (greetJoinDue).
func (c *Cluster) greeted(g greetMsg) {
	c.merge([]record{g.Record}, false)
	to := netip.AddrPortFrom(netip.MustParseAddr(g.Addr), uint16(g.Port)) // checked in decodeGreeting
	if !c.greetJoinDue(g.Record, to, time.Unix(0, g.Started), time.Now()) {
		return
	}
	started := c.goWithMemberlist(func(ml *memberlist.Memberlist) {
		defer c.greetJoins.Add(-1)
		if c.Alive(g.Record.Node) {
			return // memberlist listed it meanwhile (gossip, another join)
		}
		start := time.Now()
		done := c.joiningAddrs([]string{to.String()})
		_, err := ml.Join([]string{to.String()})
		done()
		if err != nil {
			c.log.Debug("join a node that greeted this one", "peer", g.Record.Node, "err", err)
			return
		}
		c.log.Debug("joined a node that greeted this one", "peer", g.Record.Node, "took", time.Since(start))
	})
	if !started {
		c.greetJoins.Add(-1)
	}
}

// joiningAddrs notes a join of addrs as running until the returned func
// is called: a node greeted by a node it is joining lists the greeter when
// its own join returns, and joining it again would only cost the greeter
// a second push/pull (see greetJoinDue). The greeter greets as it merges
// the state of the joining node, often before that node has merged the
// state it got back. Addresses that are not an IP and a port are not
// noted (a greeting names an IP).
func (c *Cluster) joiningAddrs(addrs []string) (done func()) {
	keys := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			keys = append(keys, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String())
		}
	}
	c.mu.Lock()
	for _, k := range keys {
		c.joining[k]++
	}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, k := range keys {
			if c.joining[k]--; c.joining[k] <= 0 {
				delete(c.joining, k)
			}
		}
	}
}

// joiningLocked reports whether a join of addr:port runs (joiningAddrs).
// c.mu must be held.
func (c *Cluster) joiningLocked(addr string, port int) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && c.joining[netip.AddrPortFrom(a.Unmap(), uint16(port)).String()] > 0
}

// greetJoinDue reports whether this node should join r's node at to, which
// started at started and greeted it at now (see above): r announces
// services, its node is not this one and not an alive member here, this
// node started at most greetJoinAge before it (a start is known), this
// node is not joining to (joiningAddrs), fewer than maxGreetJoins joins
// run, and to was not joined within greetJoinEvery. When it reports true
// it counts the join as running (greetJoins); the join's end uncounts it.
func (c *Cluster) greetJoinDue(r record, to netip.AddrPort, started, now time.Time) bool {
	if len(r.Services) == 0 || r.Left || started.UnixNano() <= 0 || c.started.Before(started.Add(-greetJoinAge)) {
		return false
	}
	c.mu.Lock()
	m, ok := c.members[r.Node]
	listed := ok && m.State == stateAlive
	self := r.Node == c.self.Node
	joining := c.joiningLocked(to.Addr().String(), int(to.Port()))
	c.mu.Unlock()
	if listed || self || joining {
		return false
	}
	if c.greetJoins.Add(1) > maxGreetJoins {
		c.greetJoins.Add(-1)
		return false
	}
	if ok, _ := c.joinLimit.allow(to.String(), now); !ok {
		c.greetJoins.Add(-1)
		return false
	}
	return true
}
