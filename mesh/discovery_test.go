package mesh

import (
	"slices"
	"testing"
	"time"
)

func TestPeerGate(t *testing.T) {
	var g peerGate
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	passed := 0
	for range 100 { // a burst: a hundred peers heard at once
		if g.allow(t0, true) {
			passed++
		}
	}
	if passed != joinBurst {
		t.Fatalf("burst: %d passed, want %d", passed, joinBurst)
	}
	if g.allow(t0.Add(100*time.Millisecond), true) {
		t.Error("passed one 100ms after the burst, want none before 1/joinRate")
	}
	if !g.allow(t0.Add(time.Second), true) {
		t.Error("none passed a second later")
	}
	// A long pause refills the burst and no more.
	passed = 0
	for range 10 {
		if g.allow(t0.Add(time.Hour), true) {
			passed++
		}
	}
	if passed != joinBurst {
		t.Errorf("after an hour: %d passed, want %d", passed, joinBurst)
	}
	// In a cluster, no peer goes to the join loop at once, however full
	// the bucket.
	if g.allow(t0.Add(2*time.Hour), false) {
		t.Error("a node in a cluster passed a peer at once, want it held")
	}
}

// TestPeerGateHolds: peers turned away are joined later if memberlist
// still does not know them, and forgotten if it does. Alone, a held peer
// is joined as soon as a token frees up; in a cluster only once its hold
// ran out, and one at a time.
func TestPeerGateHolds(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	noJitter := func(time.Duration) time.Duration { return 0 }
	isKnown := func(node string) bool { return node == "member" }
	tests := []struct {
		name  string
		alone bool
		at    time.Duration // after the holds
		want  []string
	}{
		{"alone, no token yet", true, 0, nil},
		{"alone, a token a second later", true, time.Second, []string{"10.0.0.2:7946"}},
		{"in a cluster, a second later: still held", false, time.Second, nil},
		{"in a cluster, just before the hold ends", false, holdFor - time.Millisecond, nil},
		{"in a cluster, when the hold ends", false, holdFor, []string{"10.0.0.2:7946"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := peerGate{jitter: noJitter}
			for range joinBurst {
				g.allow(t0, true)
			}
			g.hold(t0, "member", "10.0.0.1:7946")
			g.hold(t0, "stranger", "10.0.0.2:7946")
			got := g.take(t0.Add(tt.at), tt.alone, isKnown)
			if !slices.Equal(got, tt.want) {
				t.Errorf("take: %v, want %v", got, tt.want)
			}
			// The known peer is forgotten; the stranger is held until taken.
			if got, want := g.holding(), len(tt.want) == 0; got != want {
				t.Errorf("holding() = %v after the first take, want %v", got, want)
			}
			if got := g.take(t0.Add(time.Hour), tt.alone, isKnown); len(tt.want) > 0 && len(got) != 0 {
				t.Errorf("take again: %v, want none (both forgotten)", got)
			}
			// The reconcile loop ticks slowly only when nothing is held.
			if g.take(t0.Add(2*time.Hour), tt.alone, isKnown); g.holding() {
				t.Error("holding() true after every held peer was taken or forgotten")
			}
		})
	}
}

// TestPeerGateClusterPace: a node in a cluster joins held peers that
// gossip did not bring in at most one per takeEvery, and holds each for a
// random time between holdFor and twice that, so that the nodes that heard
// a newcomer together do not all pull state from it together. This is the
// start-up storm of issue 10: with the old gate, every node joined every
// peer not yet a member at joinRate.
func TestPeerGateClusterPace(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	g := peerGate{jitter: func(d time.Duration) time.Duration { return d / 2 }}
	for i := range 50 {
		g.hold(t0, string(rune('a'+i)), "10.0.0.1:7946")
	}
	if got := g.take(t0.Add(holdFor), false, func(string) bool { return false }); len(got) != 0 {
		t.Fatalf("take at holdFor with jitter holdFor/2: %d, want none", len(got))
	}
	joined := 0
	for at := holdFor + holdFor/2; at < holdFor+holdFor/2+10*time.Second; at += 100 * time.Millisecond {
		joined += len(g.take(t0.Add(at), false, func(string) bool { return false }))
	}
	if want := int(10 * time.Second / takeEvery); joined != want {
		t.Errorf("joined %d held peers in 10s in a cluster, want %d (one per takeEvery)", joined, want)
	}
	// Peers memberlist learnt of meanwhile are dropped, not joined.
	if got := g.take(t0.Add(time.Hour), false, func(string) bool { return true }); len(got) != 0 {
		t.Errorf("take of known peers: %v, want none", got)
	}
	if len(g.deferred) != 0 {
		t.Errorf("%d peers still held after all became known", len(g.deferred))
	}
}

// TestReconcileDelay: a cluster change right after a reconcile waits for
// the rest of reconcileGap, one after a quiet spell does not wait.
func TestReconcileDelay(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		since time.Duration
		want  time.Duration
	}{
		{0, reconcileGap},
		{reconcileGap / 5, reconcileGap * 4 / 5},
		{reconcileGap, 0},
		{time.Minute, 0},
	} {
		if got := reconcileDelay(t0, t0.Add(tt.since)); got != tt.want {
			t.Errorf("reconcileDelay %s after the last reconcile = %s, want %s", tt.since, got, tt.want)
		}
	}
}
