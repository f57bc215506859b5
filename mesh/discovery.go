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
// already members are skipped before the gate (Cluster.Alive). Peers the
// gate turns away are held, and the reconcile loop joins those that are
// still not members as tokens free up (take): nodes that started together
// and formed separate groups find each other within seconds.
const (
	joinBurst = 3
	joinRate  = 2 // per second
)

// maxDeferred bounds the discovered peers a gate holds back.
const maxDeferred = 1024

// peerGate is a token bucket over discovered peers, and the peers it held
// back, so that none is lost: a peer that is still not a member when a
// token frees up is joined then (take). That matters when nodes that
// started together formed separate groups: mDNS, quiet once a node is in
// a cluster, would report the other group's nodes again only minutes
// later. Safe for concurrent use; the zero value starts full.
type peerGate struct {
	mu       sync.Mutex
	tokens   float64           // guarded by mu
	last     time.Time         // guarded by mu; zero: never used, bucket full
	deferred map[string]string // guarded by mu; held-back peers: gossip address by node name
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
// at now.
func (g *peerGate) allow(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refillLocked(now)
	if g.tokens < 1 {
		return false
	}
	g.tokens--
	return true
}

// hold remembers a peer that allow turned away.
func (g *peerGate) hold(node, addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deferred == nil {
		g.deferred = make(map[string]string)
	}
	if _, ok := g.deferred[node]; ok || len(g.deferred) < maxDeferred {
		g.deferred[node] = addr
	}
}

// take returns held-back peers for which isMember is false, as many as
// the bucket allows at now, and forgets them along with those that are
// members by now.
func (g *peerGate) take(now time.Time, isMember func(node string) bool) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refillLocked(now)
	var out []string
	for node, addr := range g.deferred {
		if isMember(node) {
			delete(g.deferred, node)
			continue
		}
		if g.tokens < 1 {
			break
		}
		g.tokens--
		out = append(out, addr)
		delete(g.deferred, node)
	}
	return out
}
