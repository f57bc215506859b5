package mesh

import (
	"sync"
	"time"
)

// Discovered peers passed on to the join loop: at most joinBurst at once
// and joinRate a second after that.
//
// When a hundred nodes start together, each hears every other within a few
// milliseconds (mDNS answers to its first query), and each join is a full
// state exchange with one peer. Joining all of them made ten thousand
// exchanges in the first seconds, enough to starve the probes of a 2-core
// lab and start a storm of false failures (issue 10). Joining a few peers
// is enough: gossip brings in the rest within a second, and peers that are
// already members are skipped before the gate (Cluster.Alive). Three
// joins per node make one cluster out of nodes that start together with
// near certainty; a group that still formed apart is found by the
// periodic mDNS query (announce: every 10xQueryMax while quiet) or by
// the join loop retrying its candidates.
const (
	joinBurst = 3
	joinRate  = 2 // per second
)

// peerGate is a token bucket over discovered peers. Safe for concurrent
// use; the zero value starts full.
type peerGate struct {
	mu     sync.Mutex
	tokens float64   // guarded by mu
	last   time.Time // guarded by mu; zero: never used, bucket full
}

// allow reports whether one more discovered peer may go to the join loop
// at now.
func (g *peerGate) allow(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last.IsZero() {
		g.tokens = joinBurst
	} else {
		g.tokens = min(joinBurst, g.tokens+now.Sub(g.last).Seconds()*joinRate)
	}
	g.last = now
	if g.tokens < 1 {
		return false
	}
	g.tokens--
	return true
}
