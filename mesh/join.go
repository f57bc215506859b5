// Joining: peers from discovery and the static seeds become gossip joins.

package mesh

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
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
		joining  bool     // a join to it is in flight
		joined   bool     // the last join to it succeeded; next is when to check it again
		self     bool     // it stands for this node only: never joined
		unseen   bool     // joined, and not in the member list by its address since
		resolved []string // the IP:port addresses its last join went to, this node's left out
	}
	type result struct {
		addr     string
		resolved []string // this node's own address left out
		self     bool     // resolved to this node only: not joined
		err      error
	}
	// At most maxParallelJoins joins are in flight, so their sends never
	// block, also after the loop has returned.
	results := make(chan result, maxParallelJoins)
	recheck := cmp.Or(n.recheck, seedRecheck)
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
		if r.resolved != nil {
			c.resolved = r.resolved
		}
		if r.self {
			c.self = true // skipped from now on
			return
		}
		c.joined = r.err == nil
		again := c.unseen
		c.unseen = r.err == nil
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
		if again {
			// A seed behind NAT, or advertising another address, is
			// joined again every recheck for as long as the node runs:
			// an Info line each time would fill an idle node's log.
			n.log.Debug("joined again: the seed is not in the member list by this address", "peer", r.addr, "next_in", recheck)
		} else {
			n.log.Info("joined", "peer", r.addr)
		}
		n.joined.Add(1)
		c.backoff, c.failures = time.Second, 0
		if !c.seed {
			delete(cands, r.addr)
			return
		}
		// A seed stays, to be joined again should it drop out of the
		// member list. One that never shows up in it under the address
		// it was joined at (it advertises another: NAT, a second
		// interface, this node itself under 127.0.1.1) is joined again
		// only after seedRecheck, not at once and forever.
		c.next = time.Now().Add(recheck)
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
			if members[a] || slices.ContainsFunc(c.resolved, func(r string) bool { return members[r] }) {
				c.backoff, c.failures, c.next, c.unseen = time.Second, 0, time.Time{}, false
				continue
			}
			isSelf := a == self || c.self
			if !isSelf && !c.joined {
				busy = true
			}
			if isSelf || c.joining || now.Before(c.next) || inflight >= maxParallelJoins {
				continue
			}
			c.joining = true
			inflight++
			n.joins.Go(func() {
				// Resolved here rather than by memberlist, so that a seed
				// given by host name is recognised in the member list by
				// the addresses it stands for. This node's own address is
				// left out: joining itself tells it nothing, and as a live
				// member it would make the seed look joined when none of
				// its other nodes is.
				rs, err := resolveJoin(ctx, a, n.lookupIP)
				rs = slices.DeleteFunc(rs, func(r string) bool { return r == self })
				own := err == nil && len(rs) == 0
				if err == nil && !own {
					_, err = n.cluster.Join(rs)
				}
				results <- result{addr: a, resolved: rs, self: own, err: err}
			})
		}
		if want := map[bool]time.Duration{true: busyTick, false: idleTick}[busy]; want != tick {
			tick = want
			t.Reset(tick)
		}
	}
}

// seedRecheck is how long after a successful join a seed that is still
// not in the member list by its address is joined again.
const seedRecheck = 30 * time.Second

// resolveJoin turns a join address, host:port, into the IP:port addresses
// it stands for, in the form liveAddrs gives members' addresses. A host
// name is looked up now, at every attempt, so a name that resolves only
// later (its DNS record not there yet) is joined once it does. Only its
// IPv4 addresses: gossip listens and advertises on IPv4 only, so a join
// to one of its IPv6 addresses could only fail, after up to a TCPTimeout
// where a firewall drops it.
func resolveJoin(ctx context.Context, addr string, lookup func(context.Context, string) ([]netip.Addr, error)) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []string{net.JoinHostPort(ip.Unmap().String(), port)}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
		}
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("mesh: join %s: %w", addr, err)
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.Unmap().String(), port))
	}
	return out, nil
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
