package forward

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// testConfig returns fast timers and a Debug logger on the test's output, so
// the logging paths run under -race too.
func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DialTimeout = 2 * time.Second
	cfg.HandoffTimeout = 2 * time.Second
	cfg.DrainTimeout = 5 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return cfg
}

// autoListen is a ListenFunc seam around the real one: a Listen address
// with host "auto" (for example "auto:web") listens on 127.0.0.1:0 and
// records the real address; anything else is passed through.
type autoListen struct {
	real func(ctx context.Context, network, address string) (net.Listener, error)

	mu    sync.Mutex
	addrs map[string]string // guarded by mu; Listen key → real address
}

func (a *autoListen) listen(ctx context.Context, network, address string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil || host != "auto" {
		return a.real(ctx, network, address)
	}
	ln, err := a.real(ctx, network, "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if a.addrs == nil {
		a.addrs = make(map[string]string)
	}
	a.addrs[address] = ln.Addr().String()
	a.mu.Unlock()
	return ln, nil
}

func (a *autoListen) addr(t *testing.T, key string) string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	addr, ok := a.addrs[key]
	if !ok {
		t.Fatalf("no listener for %q", key)
	}
	return addr
}

// newProxy returns a Proxy with the autoListen seam, shut down in Cleanup.
func newProxy(t *testing.T, cfg Config) (*Proxy, *autoListen) {
	t.Helper()
	al := &autoListen{}
	if cfg.ListenFunc == nil {
		real := cfg
		if err := real.prepare(); err != nil {
			t.Fatal(err)
		}
		al.real = real.ListenFunc // with the socket options of cfg
		cfg.ListenFunc = al.listen
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Shutdown(context.Background()); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return p, al
}

// newServer returns a started Server on 127.0.0.1:0 with one target per
// service, shut down in Cleanup.
func newServer(t *testing.T, cfg Config, services map[string]string) *Server {
	t.Helper()
	multi := make(map[string][]string, len(services))
	for name, target := range services {
		multi[name] = []string{target}
	}
	return newServerTargets(t, cfg, multi)
}

// newServerTargets is newServer with any number of targets per service.
func newServerTargets(t *testing.T, cfg Config, services map[string][]string) *Server {
	t.Helper()
	s, err := NewServer(cfg, func(name svcname.Name) ([]string, bool) {
		targets, ok := services[name.String()]
		return targets, ok
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := s.Start(t.Context(), "127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// startBackend runs handle for every connection to a new listener on
// 127.0.0.1:0 and returns its address. Cleanup closes the listener and any
// open conns and waits for the handlers.
func startBackend(t testing.TB, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echo copies everything back and then half-closes.
// bannerBackend sends "banner", half-closes, and then hands on everything
// the client still sends, up to its EOF: the backend side of a half-close
// test. It serves one connection at a time through received. A
// connection that brings nothing is not handed on: on a slow box a
// proxy's extra connect attempt (Config.DialAttempt) can reach the backend
// and be closed unused, and its empty read must neither take the place of
// the real connection's nor block the backend's cleanup.
func bannerBackend(t testing.TB) (addr string, received <-chan string) {
	ch := make(chan string, 1)
	done := make(chan struct{})
	addr = startBackend(t, func(c *net.TCPConn) {
		_, _ = io.WriteString(c, "banner")
		_ = c.CloseWrite()
		b, _ := io.ReadAll(c)
		if len(b) == 0 {
			return
		}
		select {
		case ch <- string(b):
		case <-done:
		}
	})
	t.Cleanup(func() { close(done) }) // runs before startBackend's, which waits for the handlers
	return addr, ch
}

func echo(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

// reply sends b and closes.
func reply(b string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) { _, _ = io.WriteString(c, b) }
}

// closedAddr returns an address on 127.0.0.1 where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a hung test fails instead of hanging
	return c.(*net.TCPConn)
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// roundTrip writes msg, half-closes, and returns everything read until EOF.
func roundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// fakeClock is a Proxy.now seam that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time // guarded by mu
}

// useFakeClock gives p a fake clock. Call it before the first Update.
func useFakeClock(p *Proxy) *fakeClock {
	c := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	p.now = c.now
	return c
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// useSeed gives p a deterministic Proxy.intN. Call it before the first
// Update.
func useSeed(p *Proxy, seed uint64) {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed))
	p.intN = func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		return r.IntN(n)
	}
}

// fault is what faultDial does to a dial.
type fault int

const (
	faultNone      fault = iota
	faultRefuse          // fail at once with ECONNREFUSED
	faultBlackhole       // block until the dial's ctx ends, like a dropped SYN
)

// faultDial is a DialFunc seam around a real dialer that injects faults per
// address and records every dial.
type faultDial struct {
	mu     sync.Mutex
	faults map[string]fault         // guarded by mu
	delays map[string]time.Duration // guarded by mu; a connect that takes this long
	dialed []string                 // guarded by mu
}

// setDelay makes a dial of addr take d before it connects (a far target),
// or fail when the dial's ctx ends first.
func (f *faultDial) setDelay(addr string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.delays == nil {
		f.delays = make(map[string]time.Duration)
	}
	f.delays[addr] = d
}

func (f *faultDial) set(addr string, ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults == nil {
		f.faults = make(map[string]fault)
	}
	f.faults[addr] = ft
}

// take returns the addresses dialed since the last take.
func (f *faultDial) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dialed
	f.dialed = nil
	return d
}

func (f *faultDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	ft, delay := f.faults[addr], f.delays[addr]
	f.dialed = append(f.dialed, addr)
	f.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		case <-t.C:
		}
	}
	switch ft {
	case faultRefuse:
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	case faultBlackhole:
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
