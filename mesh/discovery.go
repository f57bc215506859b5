package mesh

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Discovered peers passed on to the join loop. Until joinBurst joins of
// this node's own have succeeded, or while it is alone
// (Node.joinedCluster is false): at most joinBurst at once and joinRate a second after that.
// Then: none at once; a peer memberlist still does not know after holdFor
// to 2×holdFor (random) is joined then, at most one per takeEvery.
//
// When a hundred nodes start together, each hears every other within a few
// milliseconds (mDNS answers to its first query), and each join is a full
// state exchange with one peer. Joining all of them made ten thousand
// exchanges in the first seconds, enough to starve the probes of a 2-core
// lab and start a storm of false failures (issue 10). Joining a few peers
// is enough: gossip brings in the rest, and peers memberlist already knows
// (in any state: a live node wrongly marked dead refutes through gossip on
// its own) are skipped before the gate (Cluster.Known). Even then, with
// joins at joinRate for every peer memberlist did not know yet, a node
// made about twenty full exchanges while 100 nodes started on two cores
// (1,900 in all, session 5): gossip is slower than 2 a second there. So a
// node in a cluster holds unknown peers and joins only those that gossip
// did not bring in within holdFor: nodes that started together and formed
// separate groups find each other within seconds, without every node
// pulling full state from every newcomer.
const (
	joinBurst = 3
	joinRate  = 2 // per second, while alone
	holdFor   = 3 * time.Second
	takeEvery = 2 * time.Second
)

// maxDeferred bounds the discovered peers a gate holds back.
const maxDeferred = 1024

// peerGate is a token bucket over discovered peers, and the peers it held
// back, so that none is lost: a peer that is still unknown when its hold
// ends is joined then (take). That matters when nodes that started
// together formed separate groups: mDNS, quiet once a node is in a
// cluster, would report the other group's nodes again only minutes later.
// Safe for concurrent use; the zero value starts full.
type peerGate struct {
	mu       sync.Mutex
	tokens   float64          // guarded by mu
	last     time.Time        // guarded by mu; zero: never used, bucket full
	lastTake time.Time        // guarded by mu; the last peer take returned
	deferred map[string]*held // guarded by mu; held-back peers by node name
	// jitter returns a random duration in [0, d); nil: math/rand. Tests
	// set it for fixed hold times.
	jitter func(d time.Duration) time.Duration
}

// held is a peer the gate held back.
type held struct {
	addr string    // gossip address
	due  time.Time // not joined before
}

// refillLocked adds the tokens earned since the last call.
func (g *peerGate) refillLocked(now time.Time) {
	if g.last.IsZero() {
		g.tokens = joinBurst
	} else {
		g.tokens = min(joinBurst, g.tokens+now.Sub(g.last).Seconds()*joinRate)
	}
	g.last = now
}

// allow reports whether one more discovered peer may go to the join loop
// at now. A node in a cluster (alone false) joins no peer at once.
func (g *peerGate) allow(now time.Time, alone bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refillLocked(now)
	if !alone || g.tokens < 1 {
		return false
	}
	g.tokens--
	return true
}

// hold remembers a peer that allow turned away, due for a join between
// holdFor and 2×holdFor from now (random, so that nodes that heard the
// peer at the same moment do not all join it at the same moment). A peer
// held already keeps its due time.
func (g *peerGate) hold(now time.Time, node, addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deferred == nil {
		g.deferred = make(map[string]*held)
	}
	if h, ok := g.deferred[node]; ok {
		h.addr = addr
		return
	}
	if len(g.deferred) >= maxDeferred {
		return
	}
	j := g.jitter
	if j == nil {
		j = func(d time.Duration) time.Duration { return rand.N(d) }
	}
	g.deferred[node] = &held{addr: addr, due: now.Add(holdFor + j(holdFor))}
}

// holding reports whether the gate holds back any peer, which take will
// return or forget once it is due.
func (g *peerGate) holding() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.deferred) > 0
}

// take returns held-back peers that are due and for which isKnown is
// false: while alone (alone true) as many as the bucket allows, in a
// cluster at most one per takeEvery. It forgets them along with those
// that are known by now.
func (g *peerGate) take(now time.Time, alone bool, isKnown func(node string) bool) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refillLocked(now)
	var out []string
	for node, h := range g.deferred {
		if isKnown(node) {
			delete(g.deferred, node)
			continue
		}
		if !alone && now.Before(h.due) {
			continue
		}
		if g.tokens < 1 || !alone && (len(out) > 0 || now.Sub(g.lastTake) < takeEvery) {
			continue
		}
		g.tokens--
		if !alone {
			g.lastTake = now
		}
		out = append(out, h.addr)
		delete(g.deferred, node)
	}
	return out
}
