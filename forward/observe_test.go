package forward

import (
	"testing"
	"time"
)

// TestConnectHistogram: each time lands in the first bucket whose bound is
// at least it, counts are cumulative, and the sum adds up.
func TestConnectHistogram(t *testing.T) {
	rs := &routeState{listen: "127.0.0.1:1"}
	rs.setRoute(&Route{Service: "s", Listen: rs.listen, Backends: []Backend{{Addr: "x:1"}}})
	for _, d := range []time.Duration{50 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, 10 * time.Second} {
		rs.connect.observe(d)
	}
	p := &Proxy{routes: map[string]*routeState{rs.listen: rs}}
	cts := p.ConnectTimes()
	if len(cts) != 1 {
		t.Fatalf("got %d histograms", len(cts))
	}
	ct := cts[0]
	for le, want := range map[float64]uint64{0.0001: 1, 0.0005: 1, 0.001: 2, 0.0025: 2, 0.005: 3, 5: 3} {
		if got := ct.Buckets[le]; got != want {
			t.Errorf("bucket le=%v: %d, want %d", le, got, want)
		}
	}
	if ct.Count != 4 || ct.Service != "s" {
		t.Errorf("count %d service %q, want 4 and s", ct.Count, ct.Service)
	}
	if want := (50*time.Microsecond + 4*time.Millisecond + 10*time.Second).Seconds(); ct.Sum < want-1e-9 || ct.Sum > want+1e-9 {
		t.Errorf("sum %v, want %v", ct.Sum, want)
	}
}

func TestHandoffsByService(t *testing.T) {
	var s Server
	s.handoffsBy.add("b", true)
	s.handoffsBy.add("a", false)
	s.handoffsBy.add("b", true)
	got := s.HandoffsByService()
	want := []ServiceHandoffs{{Service: "a", Unavailable: 1}, {Service: "b", OK: 2}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// BenchmarkConnectObserve is what the histogram adds to one proxied
// connection: two clock reads and one observe, from many goroutines.
func BenchmarkConnectObserve(b *testing.B) {
	var h connectHistogram
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			h.observe(time.Since(start))
		}
	})
}

// BenchmarkHandoffsByService is what the per-service count adds to one
// handoff on the data port, from many goroutines.
func BenchmarkHandoffsByService(b *testing.B) {
	var h handoffsByService
	names := []string{"redis", "postgres", "web", "api"}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h.add(names[i%len(names)], true)
			i++
		}
	})
}
