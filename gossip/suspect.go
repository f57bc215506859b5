package gossip

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// Suspects, and the crashed process that need not wait for the timeout.
//
// memberlist declares a node that stops answering probes suspect, and dead
// only after the suspicion timeout (4×ProbeInterval×log10(n), up to six
// times that without confirmations: about 7s at 25 nodes with the LAN
// timers). Shorter timers dropped a crashed node faster but marked busy,
// live nodes dead by the thousand at 100 hosts (issue 10).
//
// Most crashes of a node on a live host are its process dying (SIGKILL, a
// panic, the OOM killer): the host's kernel then refuses connections to
// the gossip port at once, while a node that is merely slow still has its
// listening socket, and the kernel completes the handshake for it. So once
// a member turns suspect, a few nodes (confirmDialers of N at random, and
// the ringDialers members that follow it in name order) dial the member's
// gossip port (confirmSuspect): refused means the process is gone, and the
// member's services leave this node's catalog at once (Catalog hides them, Changed
// fires) while memberlist finishes its own timeout; it is still listed
// "suspect" in Members. An accepted connection, a timeout (the whole host
// or its link down) or any other error change nothing. A member memberlist
// sees alive again (it refuted the suspicion) gets its services back on the
// next scan. The first node to see the refusal (usually the one whose probe
// failed) also tells every member in one UDP packet each (sendRefused),
// and each of them dials the member itself: nothing is taken on trust, a
// wrong "refused" (say, a firewall that rejects) costs only that node's
// routes to that member, and a member memberlist does not come to suspect
// within refusedGrace is shown again.

// scanSuspects reads memberlist's node table (see nodetable.go) and
// updates the members' suspect flags; a member that has just turned
// suspect gets a confirmSuspect dial. It is called from GetBroadcasts,
// which memberlist calls on every gossip tick and piggybacked message, so
// it adds no timer and no wake-up of its own; it scans at most once per
// c.scanEvery and never waits for memberlist's lock.
func (c *Cluster) scanSuspects(now time.Time) {
	t := c.table.Load()
	if t == nil {
		return
	}
	last := c.lastScan.Load()
	if now.UnixNano()-last < int64(c.scanEvery) || !c.lastScan.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	suspects, ok := t.suspects(nil, true)
	if !ok {
		return
	}
	if len(suspects) == 0 && c.calm.Load() {
		return // nothing flagged, nothing to flag: skip the walk of every member
	}
	c.applySuspects(suspects)
}

// refusedGrace is how long a member hidden on a peer's refused message
// stays hidden while memberlist here does not (yet) hold it suspect.
// memberlist's own suspicion of a crashed process arrives within a probe
// interval or two; a member it never suspects (a wrong or stale message)
// is shown again after this.
func (c *Cluster) refusedGrace() time.Duration { return 4 * c.cfg.Memberlist.ProbeInterval }

// confirmDialers is how many members, on average, dial a new suspect. A
// suspicion reaches every member, and when every member dialed, a busy
// node suspected by all would get N connections at the worst moment. (The
// start-up bursts of false failure marks seen in 100-host lab runs of this
// branch came with and without these dials, so the dials were not their
// cause; the bound is kept so they cannot become one.) With 5 of N, a suspect's
// refused port is still found by someone in all but e^-5 (0.7%) of
// crashes, and sendRefused tells the rest, who dial only a port already
// known to refuse (the kernel's reset, no process woken).
const confirmDialers = 5

// ringDialers: besides the random few, the members that follow a new
// suspect in name order (wrapping round), this many of them, always dial
// it. The random dials alone left a crash to memberlist's timeout more
// often than e^-5: a node flips its coin only when it first sees the
// suspicion, and once one dial is refused the others are told instead, so
// in practice only the first few to hear of it had a chance (25-host lab,
// session 6: one run in five had no dial at all, and the node left the
// catalogs after 7.5 s instead of 2-3 s). Every member computes the same
// successors from its own member list, so a suspect gets these dials
// whatever N is, and they hear of it within a gossip round or two.
const ringDialers = 2

// maxConfirmSuspects: while memberlist holds more members than this
// suspect at once, nobody dials. A crash makes one suspect; a burst of
// them is a cluster too busy to answer probes, where dials only add load,
// and crashes among them are left to memberlist's timeout.
const maxConfirmSuspects = 3

// hintEvery bounds how often a refused message about one member makes
// this node dial it: a peer cannot make it dial more often than that.
const hintEvery = time.Second

// applySuspects sets each alive member's suspect flag from suspects, the
// names memberlist holds suspect, and starts a confirmSuspect for each new
// suspect not hidden yet. A hidden (refused) member is shown again when
// memberlist, having held it suspect, holds it alive again (it refuted),
// or when memberlist never held it suspect within refusedGrace.
func (c *Cluster) applySuspects(suspects []string) {
	type target struct {
		name string
		addr string
	}
	now := time.Now()
	var dial []target
	var back []string
	changed := false
	flagged := false
	c.mu.Lock()
	// This node dials a new suspect with probability confirmDialers/(N-1).
	pDial := float64(confirmDialers) / float64(max(len(c.members)-1, 1))
	if len(suspects) > maxConfirmSuspects {
		pDial = 0
	}
	// A set, not slices.Contains per member: in a suspicion storm
	// (hundreds of suspects in a simulated 400-node cluster) that was
	// members × suspects per scan.
	isSuspect := make(map[string]bool, len(suspects))
	for _, s := range suspects {
		isSuspect[s] = true
	}
	for name, m := range c.members {
		if name == c.self.Node || m.State != stateAlive {
			continue
		}
		want := isSuspect[name]
		if want != m.suspect {
			changed = true
			if !want {
				c.recheckLocked(name, m, now) // it refuted: its record may have changed meanwhile
			}
			m.suspect = want
			if want && !m.refused && pDial > 0 && (c.coin() < pDial || c.followsLocked(name, ringDialers)) {
				dial = append(dial, target{name, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))})
			}
		}
		flagged = flagged || m.suspect
		if !m.refused {
			continue
		}
		flagged = true
		if want {
			m.confirmed = true
		} else if m.confirmed || now.Sub(m.refusedAt) > c.refusedGrace() {
			m.refused, m.confirmed = false, false
			changed = true
			back = append(back, name)
		}
	}
	c.calm.Store(!flagged) // under mu, so confirmSuspect's Store(false) is never lost
	c.mu.Unlock()

	for _, name := range back {
		c.log.Info("member alive again; its services are back", "peer", name)
	}
	for _, d := range dial {
		c.log.Debug("member suspect; confirming with a connection to its gossip port", "peer", d.name, "addr", d.addr)
		c.goConfirm(d.name, d.addr, false)
	}
	if changed {
		c.notify()
	}
}

// followsLocked reports whether this node is among the first k alive
// members after name in name order, wrapping round (see ringDialers).
// c.mu is held.
func (c *Cluster) followsLocked(name string, k int) bool {
	self := c.self.Node
	// between: strictly after name and before self on the ring.
	between := func(x string) bool {
		if name < self {
			return name < x && x < self
		}
		return x > name || x < self
	}
	before := 0
	for other, m := range c.members {
		if other == name || other == self || m.State != stateAlive {
			continue
		}
		if between(other) {
			if before++; before >= k {
				return false
			}
		}
	}
	return true
}

// refusedHint handles a peer's message that member node refused its
// connection: this node dials node itself (at most once per hintEvery),
// so the hint is never taken on trust, and the members learn of a killed
// process in one hop instead of waiting for memberlist's suspicion to
// spread by gossip.
func (c *Cluster) refusedHint(node string) {
	now := time.Now()
	c.mu.Lock()
	m, ok := c.members[node]
	dial := ok && node != c.self.Node && m.State == stateAlive && !m.refused && now.Sub(m.hintAt) >= hintEvery
	var addr string
	if dial {
		m.hintAt = now
		addr = net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))
	}
	c.mu.Unlock()
	if dial {
		c.log.Debug("a peer reports a member refusing connections; confirming", "peer", node)
		c.goConfirm(node, addr, true)
	}
}

// goConfirm runs confirmSuspect in a goroutine that Shutdown waits for.
func (c *Cluster) goConfirm(name, addr string, hinted bool) {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if !c.closed {
		c.checks.Go(func() { c.confirmSuspect(name, addr, hinted) })
	}
}

// confirmSuspect dials addr, the gossip port of member name. Refused: the
// member is marked refused, so Catalog hides its services, and unless
// the dial was itself prompted by a peer's message (hinted), every other
// member is told, so each confirms it too. It writes memberlist's stream
// label before it closes, so the member, if it is alive after all, reads
// a clean end of stream and logs nothing. It gives up after the probe
// timeout or on Shutdown.
func (c *Cluster) confirmSuspect(name, addr string, hinted bool) {
	ctx, cancel := context.WithTimeout(c.stopCtx, c.cfg.Memberlist.ProbeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		_ = conn.SetWriteDeadline(time.Now().Add(c.cfg.Memberlist.ProbeTimeout))
		_ = memberlist.AddLabelHeaderToStream(conn, c.cfg.Cluster)
		_ = conn.Close()
		c.log.Debug("suspect member accepts connections; leaving it to memberlist", "peer", name)
		return
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		c.log.Debug("suspect member did not answer a connection; leaving it to memberlist", "peer", name, "err", err)
		return
	}
	c.mu.Lock()
	m, ok := c.members[name]
	hide := ok && m.State == stateAlive && !m.refused
	if hide {
		m.refused, m.refusedAt, m.confirmed = true, time.Now(), m.suspect
		c.calm.Store(false)
	}
	c.mu.Unlock()
	if !hide {
		return
	}
	c.log.Info("member refuses connections on its gossip port: its process is gone; hiding its services", "peer", name, "addr", addr)
	c.notify()
	if !hinted {
		c.sendRefused(name)
	}
}

// sendRefused tells every alive member but name, one UDP packet each,
// that name refused this node's connection. Only a node that confirmed a
// suspicion of its own sends it (typically the one whose probe failed),
// not those told, so a crash costs a few times N packets, not N².
func (c *Cluster) sendRefused(name string) {
	b, err := encodeRefused(name)
	if err != nil {
		return
	}
	c.sendToMembers(b, name, "send refused")
}
