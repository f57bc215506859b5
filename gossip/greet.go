package gossip

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// Greeting new members with this node's record, and joining a node that
// greeted this one (split from want.go, which asks members for records).

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
	if c.onGreet != nil {
		c.onGreet(to.Name, greets)
	}
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
			g := greetMsg{Record: r, Addr: w.Addr, Port: w.Port, Up: int64(time.Since(c.started))}
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
// address memberlist reaches it at, and how long it has run (nanoseconds,
// by its own monotonic clock), which the receiver, not listing it, has no
// other way to know (greetJoinDue). An uptime, not a start time, so that
// the receiver places the greeter's start on its own clock: compared as
// wall clocks, a newcomer whose clock lags (a board without a real-time
// clock before NTP) would look older than every member, and every
// announcing member would join it, the storm greetJoinAge prevents.
type greetMsg struct {
	Record record `json:"record"`
	Addr   string `json:"addr"`
	Port   int    `json:"port"`
	Up     int64  `json:"up,omitempty"`
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
// It joins only once the greeter answered a ping (memberlist's Ping) at
// the address its greeting gives (see "Pinging the greeter" below). It
// joins one address at most once per greetJoinEvery, at most
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
//
// Pinging the greeter: a join pushes this node's whole state to the
// address the greeting names (213 KB at 1,000 simulated nodes, about 700
// times the greeting), and memberlist does not tell a user message's
// source address. So a sender holding the key, or any sender on a
// cluster without one, could name a third party's address and have this
// node push its state there (session 20 review). The greeting names the
// address memberlist advertises, which differs from a stream's source
// behind NAT or on a multi-homed host, so the address cannot be checked
// against the source. Instead the greeted node first pings the named node
// at the named address: memberlist answers a ping only for its own name,
// and only under the cluster's label and key, so only the greeter (or a
// node of this cluster that this one does not list yet) gets the push.
// A third party gets one packet: the ping and what memberlist piggybacks
// on it, at most UDPBufferSize (1,400 bytes), as on any probe. The
// greeter gets one more round trip, and the greeted node waits at most
// ProbeTimeout when the ping or its ack is lost (then the greeter's alive
// message comes by gossip).
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
	now := time.Now()
	var greeterStart time.Time // unknown: no join
	if g.Up > 0 {
		greeterStart = now.Add(-time.Duration(g.Up)) // on this node's clock
	}
	if !c.greetJoinDue(g.Record, to, greeterStart, now) {
		return
	}
	started := c.goWithMemberlist(func(ml *memberlist.Memberlist) {
		defer c.greetJoins.Add(-1)
		if c.Alive(g.Record.Node) {
			return // memberlist listed it meanwhile (gossip, another join)
		}
		start := time.Now()
		if _, err := ml.Ping(g.Record.Node, net.UDPAddrFromAddrPort(to)); err != nil {
			c.log.Debug("not joining a node that greeted this one: it does not answer at the address its greeting gives",
				"peer", g.Record.Node, "addr", to.String(), "err", err)
			return
		}
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
