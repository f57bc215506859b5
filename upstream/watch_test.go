package upstream

import (
	"context"
	"errors"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/miekg/dns"
)

const watchSRV = "_web._tcp.example.lab."

// update is one onChange call.
type update struct {
	name    string
	targets []Target
}

// recorder collects onChange calls on a channel big enough that the watch
// never blocks on it in these tests.
func recorder() (chan update, func(svcname.Name, []Target)) {
	ch := make(chan update, 100)
	return ch, func(name svcname.Name, ts []Target) { ch <- update{name.String(), ts} }
}

func next(t *testing.T, ch <-chan update) update {
	t.Helper()
	select {
	case u := <-ch:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for onChange")
		return update{}
	}
}

func noUpdate(t *testing.T, ch <-chan update) {
	t.Helper()
	select {
	case u := <-ch:
		t.Fatalf("unexpected onChange with %v", u.targets)
	default:
	}
}

// srvZone serves watchSRV with one SRV record per addr (all on port 80,
// each host with one A record), all with the given TTL.
func srvZone(t *testing.T, z *zone, ttl int, ips ...string) {
	t.Helper()
	var answers []string
	for i, ip := range ips {
		host := string(rune('a'+i)) + ".example.lab."
		answers = append(answers,
			watchSRV+" "+strconv.Itoa(ttl)+" IN SRV 0 10 80 "+host,
			host+" "+strconv.Itoa(ttl)+" IN A "+ip)
	}
	z.set(mustRRs(t, answers...), nil, nil)
}

func TestWatchFollowsRecordChanges(t *testing.T) {
	z := newZone()
	srvZone(t, z, 0, "10.0.0.1", "10.0.0.2") // TTL 0: re-resolved every MinTTL (50ms)
	r := newResolver(t, testConfig(t, fakeDNS(t, z)))
	ch, onChange := recorder()

	r.Watch(t.Context(), "web", Spec{Kind: KindSRV, Name: watchSRV}, onChange)
	u := next(t, ch)
	if u.name != "web" {
		t.Errorf("name: got %q, want %q", u.name, "web")
	}
	if want := []string{"10.0.0.1:80", "10.0.0.2:80"}; !slices.Equal(addrs(u.targets), want) {
		t.Fatalf("first targets: got %v, want %v", addrs(u.targets), want)
	}

	srvZone(t, z, 0, "10.0.0.2", "10.0.0.3")
	u = next(t, ch)
	if want := []string{"10.0.0.2:80", "10.0.0.3:80"}; !slices.Equal(addrs(u.targets), want) {
		t.Fatalf("after change: got %v, want %v", addrs(u.targets), want)
	}

	// The service goes away (target "."): an empty list is a change too.
	z.set(mustRRs(t, watchSRV+" 0 IN SRV 0 0 0 ."), nil, nil)
	u = next(t, ch)
	if len(u.targets) != 0 {
		t.Fatalf("after target \".\": got %v, want none", u.targets)
	}
}

// TestWatchIgnoresReorder checks that re-resolutions that only shuffle the
// targets do not call onChange.
func TestWatchIgnoresReorder(t *testing.T) {
	z := newZone()
	srvZone(t, z, 0, "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
	r := newResolver(t, testConfig(t, fakeDNS(t, z)))
	ch, onChange := recorder()

	r.Watch(t.Context(), "web", Spec{Kind: KindSRV, Name: watchSRV}, onChange)
	next(t, ch)
	start := z.count("", "SRV", watchSRV)
	waitFor(t, "5 more resolutions", func() bool { return z.count("", "SRV", watchSRV) >= start+5 })
	noUpdate(t, ch)
}

func TestWatchKeepsTargetsOnFailure(t *testing.T) {
	z := newZone()
	srvZone(t, z, 0, "10.0.0.1")
	r := newResolver(t, testConfig(t, fakeDNS(t, z)))
	ch, onChange := recorder()

	r.Watch(t.Context(), "web", Spec{Kind: KindSRV, Name: watchSRV}, onChange)
	next(t, ch)

	for _, rcode := range []int{dns.RcodeServerFailure, dns.RcodeNameError} {
		z.set(nil, nil, map[string]int{watchSRV: rcode})
		start := z.count("", "SRV", watchSRV)
		// RetryMin 10ms..RetryMax 40ms: several retries arrive quickly.
		waitFor(t, "retries", func() bool { return z.count("", "SRV", watchSRV) >= start+4 })
		noUpdate(t, ch)
	}

	srvZone(t, z, 0, "10.0.0.1") // back, unchanged: no call
	start := z.count("", "SRV", watchSRV)
	waitFor(t, "recovery", func() bool { return z.count("", "SRV", watchSRV) >= start+3 })
	noUpdate(t, ch)

	srvZone(t, z, 0, "10.0.0.9")
	u := next(t, ch)
	if want := []string{"10.0.0.9:80"}; !slices.Equal(addrs(u.targets), want) {
		t.Fatalf("got %v, want %v", addrs(u.targets), want)
	}
}

// TestWatchFirstResultAfterFailures checks a watch whose first resolutions
// fail reports nothing until one succeeds.
func TestWatchFirstResultAfterFailures(t *testing.T) {
	z := newZone()
	z.set(nil, nil, map[string]int{watchSRV: dns.RcodeServerFailure})
	r := newResolver(t, testConfig(t, fakeDNS(t, z)))
	ch, onChange := recorder()

	r.Watch(t.Context(), "web", Spec{Kind: KindSRV, Name: watchSRV}, onChange)
	waitFor(t, "retries", func() bool { return z.count("", "SRV", watchSRV) >= 3 })
	noUpdate(t, ch)
	srvZone(t, z, 3600, "10.0.0.1")
	if u := next(t, ch); !slices.Equal(addrs(u.targets), []string{"10.0.0.1:80"}) {
		t.Fatalf("got %v, want [10.0.0.1:80]", addrs(u.targets))
	}
}

func TestWatchRefresh(t *testing.T) {
	z := newZone()
	srvZone(t, z, 3600, "10.0.0.1") // cached for an hour unless refreshed
	r := newResolver(t, testConfig(t, fakeDNS(t, z)))
	ch, onChange := recorder()

	r.Watch(t.Context(), "web", Spec{Kind: KindSRV, Name: watchSRV}, onChange)
	next(t, ch)
	srvZone(t, z, 3600, "10.0.0.2")
	r.Refresh("web")
	if u := next(t, ch); !slices.Equal(addrs(u.targets), []string{"10.0.0.2:80"}) {
		t.Fatalf("got %v, want [10.0.0.2:80]", addrs(u.targets))
	}
	r.Refresh("nobody") // unknown names are ignored

	// A burst of Refresh calls costs at most a couple of queries.
	before := z.count("", "SRV", watchSRV)
	for range 50 {
		r.Refresh("web")
	}
	waitFor(t, "refresh query", func() bool { return z.count("", "SRV", watchSRV) > before })
	if n := z.count("", "SRV", watchSRV) - before; n > 2 {
		t.Errorf("50 Refresh calls sent %d SRV queries, want at most 2", n)
	}
}

// TestWatchReplace checks a second Watch of a name replaces the first.
func TestWatchReplace(t *testing.T) {
	z := newZone()
	srvZone(t, z, 3600, "10.0.0.1")
	r := newResolver(t, testConfig(t, fakeDNS(t, z)))
	ch, onChange := recorder()

	r.Watch(t.Context(), "web", Spec{Kind: KindSRV, Name: watchSRV}, onChange)
	next(t, ch)
	r.Watch(t.Context(), "web", Spec{Kind: KindStatic, Name: "10.0.7.7", Port: 80}, onChange)
	if u := next(t, ch); !slices.Equal(addrs(u.targets), []string{"10.0.7.7:80"}) {
		t.Fatalf("got %v, want [10.0.7.7:80]", addrs(u.targets))
	}
	r.mu.Lock()
	n := len(r.watches)
	r.mu.Unlock()
	if n != 1 {
		t.Errorf("watches: got %d, want 1", n)
	}
}

// goroutinesBack waits until the goroutine count is back to base.
func goroutinesBack(t *testing.T, base int) {
	t.Helper()
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= base })
}

func TestCloseStopsWatches(t *testing.T) {
	z := newZone()
	srvZone(t, z, 0, "10.0.0.1")
	addr := fakeDNS(t, z)
	silent := silentDNS(t)
	base := runtime.NumGoroutine()

	cfg := testConfig(t, addr)
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	slowCfg := testConfig(t, silent)
	slowCfg.Timeout = time.Minute // Close must not wait for it
	slow, err := New(slowCfg)
	if err != nil {
		t.Fatal(err)
	}
	ch, onChange := recorder()
	r.Watch(t.Context(), "web", Spec{Kind: KindSRV, Name: watchSRV}, onChange)
	r.Watch(t.Context(), "ip", Spec{Kind: KindStatic, Name: "10.0.0.5", Port: 1}, onChange)
	slow.Watch(t.Context(), "hang", Spec{Kind: KindDNS, Name: "hang.lab", Port: 1}, onChange)
	next(t, ch)
	next(t, ch)
	if runtime.NumGoroutine() <= base {
		t.Fatal("watch goroutines not running")
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := slow.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on an in-flight query")
	}

	// Concurrent Close calls: exactly one succeeds.
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { errs <- r.Close() })
	}
	wg.Wait()
	close(errs)
	nilCount := 0
	for err := range errs {
		switch {
		case err == nil:
			nilCount++
		case !errors.Is(err, net.ErrClosed):
			t.Errorf("second Close: got %v, want net.ErrClosed", err)
		}
	}
	if nilCount != 1 {
		t.Errorf("%d Close calls returned nil, want 1", nilCount)
	}
	goroutinesBack(t, base)

	// After Close, Watch starts nothing and Refresh is a no-op.
	r.Watch(t.Context(), "late", Spec{Kind: KindStatic, Name: "10.0.0.6", Port: 1}, onChange)
	r.Refresh("late")
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("goroutines after late Watch: got %d, want <= %d", n, base)
	}
	noUpdate(t, ch)
}

func TestWatchContextCancel(t *testing.T) {
	z := newZone()
	srvZone(t, z, 0, "10.0.0.1")
	addr := fakeDNS(t, z)
	base := runtime.NumGoroutine()
	r := newResolver(t, testConfig(t, addr))
	ch, onChange := recorder()

	ctx, cancel := context.WithCancel(t.Context())
	r.Watch(ctx, "web", Spec{Kind: KindSRV, Name: watchSRV}, onChange)
	next(t, ch)
	cancel()
	goroutinesBack(t, base)
	waitFor(t, "watch to unregister", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.watches) == 0
	})
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
