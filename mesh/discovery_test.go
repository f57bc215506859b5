package mesh

import (
	"testing"
	"time"
)

func TestPeerGate(t *testing.T) {
	var g peerGate
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	passed := 0
	for range 100 { // a burst: a hundred peers heard at once
		if g.allow(t0) {
			passed++
		}
	}
	if passed != joinBurst {
		t.Fatalf("burst: %d passed, want %d", passed, joinBurst)
	}
	if g.allow(t0.Add(100 * time.Millisecond)) {
		t.Error("passed one 100ms after the burst, want none before 1/joinRate")
	}
	if !g.allow(t0.Add(time.Second)) {
		t.Error("none passed a second later")
	}
	// A long pause refills the burst and no more.
	passed = 0
	for range 10 {
		if g.allow(t0.Add(time.Hour)) {
			passed++
		}
	}
	if passed != joinBurst {
		t.Errorf("after an hour: %d passed, want %d", passed, joinBurst)
	}
}

// TestPeerGateHolds: peers turned away are joined later if they are still
// not members, and forgotten if they are.
func TestPeerGateHolds(t *testing.T) {
	var g peerGate
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for range joinBurst {
		g.allow(t0)
	}
	g.hold("member", "10.0.0.1:7946")
	g.hold("stranger", "10.0.0.2:7946")
	isMember := func(node string) bool { return node == "member" }
	if got := g.take(t0, isMember); len(got) != 0 {
		t.Errorf("take with no token: %v, want none", got)
	}
	got := g.take(t0.Add(time.Second), isMember)
	if len(got) != 1 || got[0] != "10.0.0.2:7946" {
		t.Errorf("take a second later: %v, want the stranger only", got)
	}
	if got := g.take(t0.Add(time.Hour), isMember); len(got) != 0 {
		t.Errorf("take again: %v, want none (both forgotten)", got)
	}
}
