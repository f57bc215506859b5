// Joining: peers from discovery and the static seeds become gossip joins.

package mesh

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ambassador-mesh/ambassador/announce"
	"github.com/ambassador-mesh/ambassador/gossip"
)

// onPeer is called by announce for every peer it sees; it must not block.
func (n *Node) onPeer(p announce.Peer) {
	if n.cluster.Known(p.Node) {
		return // memberlist knows it: nothing to join, see peerGate
	}
	addr := net.JoinHostPort(p.Addr.String(), strconv.Itoa(p.GossipPort))
	now := time.Now()
	if !n.gate.allow(now, !n.joinedCluster()) {
		n.gate.hold(now, p.Node, addr) // gossip will likely bring it: see peerGate
		return
	}
	n.sendPeer(addr)
}

// joinedCluster reports whether this node is in a cluster through
// joinBurst joins of its own. A node that others joined is in a cluster
// too, and one join may have been to a node as new as itself: a join's
// push/pull gives only that peer's state, so a node joins its first few
// discovered peers at once for their full state (see peerGate). With the
// gate shut after the first join, or while only joined by others, 25
// nodes started within 200ms waited up to a second for the announcing
// node's record (session 5).
func (n *Node) joinedCluster() bool {
	return n.joined.Load() >= joinBurst && n.cluster.NumMembers() > 1
}

// sendPeer hands a join candidate to the join loop without blocking.
func (n *Node) sendPeer(addr string) {
	select {
	case n.peers <- addr:
	default: // the join loop is busy; discovery reports peers again
	}
}

// maxParallelJoins bounds the joins in flight at once.
const maxParallelJoins = 16

// joinLoop joins peers found by discovery and the static seeds, retrying a
// failed join with back-off. Joins run in parallel, one at a time per
// address, each bounded by memberlist's TCPTimeout (2s in the lan profile):
// a peer that never answers (firewalled, a black hole) holds up neither the
// joins to other peers nor shutdown, which waits for joins in flight only
// until its own deadline (see stop). When the
// node is alone it asks discovery to query again, so a lost query does not
// cost a minute.
func (n *Node) joinLoop(ctx context.Context) {
	type cand struct {
		next     time.Time
		backoff  time.Duration
		failures int
		seed     bool
		joining  bool // a join to it is in flight
	}
	type result struct {
		addr string
		err  error
	}
	// At most maxParallelJoins joins are in flight, so their sends never
	// block, also after the loop has returned.
	results := make(chan result, maxParallelJoins)
	inflight := 0
	cands := map[string]*cand{}
	for _, j := range n.cfg.Join {
		a, _ := joinAddr(j, n.cfg.GossipPort) // validated in Config.Validate
		cands[a] = &cand{seed: true, backoff: time.Second}
	}
	done := func(r result) {
		inflight--
		c, ok := cands[r.addr]
		if !ok {
			return
		}
		c.joining = false
		if r.err != nil {
			c.failures++
			if !c.seed && c.failures >= 5 {
				// Discovery adds it again if it is still around.
				n.log.Debug("join failed, giving up on peer", "peer", r.addr, "err", r.err)
				delete(cands, r.addr)
				return
			}
			c.next = time.Now().Add(c.backoff)
			n.log.Debug("join failed, will retry", "peer", r.addr, "retry_in", c.backoff, "err", r.err)
			c.backoff = min(c.backoff*2, 30*time.Second)
			return
		}
		n.log.Info("joined", "peer", r.addr)
		n.joined.Add(1)
		c.backoff, c.failures = time.Second, 0
		if !c.seed {
			delete(cands, r.addr)
		}
	}
	// The loop polls every 500ms while it has work (alone, or a peer to
	// join or retry) and every 5s otherwise: an idle node's CPU is mostly
	// timer wake-ups (issue 10), and new peers wake the loop anyway.
	const busyTick, idleTick = 500 * time.Millisecond, 5 * time.Second
	t := time.NewTicker(busyTick)
	defer t.Stop()
	tick := busyTick
	var lastQuery time.Time
	for {
		select {
		case <-ctx.Done():
			return // joins in flight end within TCPTimeout; stop waits for them up to its deadline
		case a := <-n.peers:
			// A new peer is tried at once; a known one keeps its back-off,
			// so a host that answers mDNS but cannot join (another key,
			// say) is not retried at every report.
			if _, ok := cands[a]; !ok {
				cands[a] = &cand{backoff: time.Second}
			}
		case r := <-results:
			done(r)
		case <-t.C:
		}
		now := time.Now()
		alone := n.cluster.NumMembers() <= 1
		if alone && n.disc != nil && now.Sub(lastQuery) > 5*time.Second {
			lastQuery = now
			n.disc.QueryNow()
		}
		members := liveAddrs(len(cands) > 0, n.cluster.Members)
		self := net.JoinHostPort(n.addr.String(), strconv.Itoa(n.cluster.GossipPort()))
		busy := alone
		for a, c := range cands {
			if members[a] {
				c.backoff, c.failures = time.Second, 0
				continue
			}
			if a != self {
				busy = true
			}
			if a == self || c.joining || now.Before(c.next) || inflight >= maxParallelJoins {
				continue
			}
			c.joining = true
			inflight++
			n.joins.Go(func() {
				_, err := n.cluster.Join([]string{a})
				results <- result{addr: a, err: err}
			})
		}
		if want := map[bool]time.Duration{true: busyTick, false: idleTick}[busy]; want != tick {
			tick = want
			t.Reset(tick)
		}
	}
}

// liveAddrs returns the gossip addresses of the alive and suspect members
// that members lists, or nil without calling it when need is false. The
// join loop needs them only to check its candidates, and an idle node's
// loop has none: copying 100 members and building their addresses on
// every idle tick was 3.5 % of an idle node's CPU (profile of a 100-host
// lab, issue 10).
func liveAddrs(need bool, members func() []gossip.Member) map[string]bool {
	if !need {
		return nil
	}
	out := map[string]bool{}
	for _, m := range members() {
		if m.State == "alive" || m.State == "suspect" {
			out[net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))] = true
		}
	}
	return out
}

// joinAddr turns HOST[:PORT] into host:port, defaulting to the gossip port.
func joinAddr(s string, port int) (string, error) {
	if _, _, err := net.SplitHostPort(s); err != nil {
		if strings.Count(s, ":") > 0 && !strings.HasPrefix(s, "[") {
			return "", fmt.Errorf("%q is not HOST[:PORT]", s)
		}
		s = net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(port))
	}
	host, p, err := splitHostPort(s, "")
	if err != nil || host == "" {
		return "", fmt.Errorf("%q is not HOST[:PORT]", s)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}
