package forward

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
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

// TestHandoffsByServiceIgnoresCase: service names compare
// case-insensitively (RFC 6335), and so does the node's lookup, so a peer
// that writes the name in another case reaches the same service. Its
// counters are that service's, under its lower-case name: not a new
// metric series (and map entry) per spelling, which anyone who reaches
// the data port could otherwise create by the thousand.
func TestHandoffsByServiceIgnoresCase(t *testing.T) {
	backend := startBackend(t, reply("hi"))
	s, err := NewServer(testConfig(t), func(name svcname.Name) ([]string, bool) {
		return []string{backend}, strings.EqualFold(name.String(), "web")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	for _, name := range []string{"web", "Web", "WEB", "wEb"} {
		c := dial(t, s.Addr().String())
		if _, err := io.WriteString(c, "AMB\x01\x03"+name); err != nil {
			t.Fatal(err)
		}
		if st := readStatus(t, c); st != statusOK {
			t.Fatalf("%s: status %v, want ok", name, st)
		}
		if b, err := io.ReadAll(c); err != nil || string(b) != "hi" {
			t.Fatalf("%s: got %q, %v, want %q", name, b, err, "hi")
		}
		c.Close()
	}
	want := []ServiceHandoffs{{Service: "web", OK: 4}}
	if got := s.HandoffsByService(); !slices.Equal(got, want) {
		t.Errorf("HandoffsByService: got %+v, want %+v", got, want)
	}
	waitFor(t, "copies done", func() bool { return s.Stats().Active == 0 })
	var keys []string
	for k := range s.Stats().ByService {
		keys = append(keys, k)
	}
	if !slices.Equal(keys, []string{"web"}) {
		t.Errorf("Stats().ByService: got keys %q, want %q", keys, []string{"web"})
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
