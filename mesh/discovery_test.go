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
