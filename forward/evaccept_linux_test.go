package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// silentBackend listens on 127.0.0.1 with a backlog of 0 and fills its
// accept queue, so that the kernel drops every further SYN: a connect to
// it stays pending (TCP resends the SYN after 1s, 3s, ...). open lets
// connects through from then on, as an echo server, once the resent SYN
// arrives.
func silentBackend(t *testing.T) (addr string, open func()) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "silent")
	ln, err := net.FileListener(f) // a copy; f is closed below
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr = ln.Addr().String()
	// Fill the queue: connects succeed until one is dropped.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
		if i == 8 {
			t.Fatal("backlog 0 took 8 connects")
		}
	}
	return addr, func() {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go echo(c.(*net.TCPConn))
			}
		}()
	}
}

// TestLoopDialNoGoroutine checks that a connection whose backend does not
// answer yet holds no goroutine on the raw accept path (the loop waits for
// the connect), while the goroutine path holds one per connection, so the
// count tells the two apart.
func TestLoopDialNoGoroutine(t *testing.T) {
	const n = 30
	for _, tc := range []struct {
		name   string
		loop   bool
		growth func(d int) bool
	}{
		{"loop", true, func(d int) bool { return d < n/4 }},
		{"goroutines", false, func(d int) bool { return d >= n-n/4 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useLoopMode(t, tc.loop)
			silent, _ := silentBackend(t)
			cfg := testConfig(t)
			cfg.DialTimeout, cfg.DialAttempt = 5*time.Second, 0 // the connect stays in the loop
			cfg.DrainTimeout = 0
			p, al := newProxy(t, cfg)
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: silent}}}})
			addr := al.addr(t, "auto:svc")
			before := runtime.NumGoroutine()
			for range n {
				dial(t, addr)
			}
			waitFor(t, "every connection accepted", func() bool { return p.Status()[0].Accepted == n })
			if d := runtime.NumGoroutine() - before; !tc.growth(d) {
				t.Errorf("%d connections dialing: %d goroutines more in the proxy", n, d)
			}
			if st := p.Status()[0]; st.Active != n || st.DialErrors != 0 {
				t.Errorf("Active %d, DialErrors %d; want %d, 0", st.Active, st.DialErrors, n)
			}
		})
	}
}

// TestLoopDialHoldsEarlyBytes checks that bytes and a FIN the client sends
// while the backend's connect is still pending reach the backend once it
// connects, in order.
func TestLoopDialHoldsEarlyBytes(t *testing.T) {
	for _, loop := range []bool{true, false} {
		t.Run(map[bool]string{true: "loop", false: "goroutines"}[loop], func(t *testing.T) {
			useLoopMode(t, loop)
			backend, open := silentBackend(t)
			cfg := testConfig(t)
			cfg.DialTimeout, cfg.DialAttempt = 10*time.Second, 0
			p, al := newProxy(t, cfg)
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: backend}}}})
			c := dial(t, al.addr(t, "auto:svc"))
			if _, err := c.Write([]byte("early bytes")); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the connection accepted", func() bool { return p.Status()[0].Accepted == 1 })
			open() // the SYN resent after 1s connects
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "early bytes" {
				t.Fatalf("read %q, %v; want %q and a clean end", b, err, "early bytes")
			}
		})
	}
}

// TestLoopDialHandOver checks a connect the loop gives up on after
// DialAttempt: the goroutine path takes the pending socket as its first
// attempt, adds attempts beside it, and after DialTimeout fails over to
// the next backend, with the counters of serveConn.
func TestLoopDialHandOver(t *testing.T) {
	for _, loop := range []bool{true, false} {
		t.Run(map[bool]string{true: "loop", false: "goroutines"}[loop], func(t *testing.T) {
			useLoopMode(t, loop)
			silent, _ := silentBackend(t)
			cfg := testConfig(t)
			cfg.DialTimeout, cfg.DialAttempt = 800*time.Millisecond, 100*time.Millisecond
			p, al := newProxy(t, cfg)
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst,
				Backends: []Backend{{Node: "silent", Addr: silent}, {Node: "b", Addr: startBackend(t, echo)}}}})
			start := time.Now()
			if got := roundTrip(t, al.addr(t, "auto:svc"), "x"); got != "x" {
				t.Fatalf("got %q, want %q", got, "x")
			}
			if d := time.Since(start); d < cfg.DialTimeout {
				t.Errorf("answered after %v, before DialTimeout %v: the silent backend was not tried", d, cfg.DialTimeout)
			}
			st := p.Status()[0]
			// Attempts at 0, 100 and 300ms (then 700ms when the box is
			// quick), then one move to the next backend.
			if st.DialErrors != 1 || st.Retries < 3 || st.NoBackend != 0 || st.HandoffRefused != 0 {
				t.Errorf("DialErrors %d, Retries %d, NoBackend %d, HandoffRefused %d; want 1, >= 3, 0, 0",
					st.DialErrors, st.Retries, st.NoBackend, st.HandoffRefused)
			}
			if bs := st.BackendStats; bs[0].Failures != 1 || !bs[0].Ejected || bs[1].Conns != 1 {
				t.Errorf("backend stats %+v", bs)
			}
		})
	}
}

// TestLoopDialRefused checks a connect the loop starts and the backend
// refuses: the connection moves on to the next backend with the counters
// of serveConn (one dial error, one retry, the refusing backend ejected).
func TestLoopDialRefused(t *testing.T) {
	for _, loop := range []bool{true, false} {
		t.Run(map[bool]string{true: "loop", false: "goroutines"}[loop], func(t *testing.T) {
			useLoopMode(t, loop)
			p, al := newProxy(t, testConfig(t))
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst,
				Backends: []Backend{{Node: "dead", Addr: closedAddr(t)}, {Node: "b", Addr: startBackend(t, echo)}}}})
			if got := roundTrip(t, al.addr(t, "auto:svc"), "x"); got != "x" {
				t.Fatalf("got %q, want %q", got, "x")
			}
			st := p.Status()[0]
			if st.DialErrors != 1 || st.Retries != 1 || st.NoBackend != 0 || st.Accepted != 1 {
				t.Errorf("DialErrors %d, Retries %d, NoBackend %d, Accepted %d; want 1, 1, 0, 1",
					st.DialErrors, st.Retries, st.NoBackend, st.Accepted)
			}
			if bs := st.BackendStats; bs[0].Failures != 1 || !bs[0].Ejected || bs[1].Conns != 1 {
				t.Errorf("backend stats %+v", bs)
			}
			waitFor(t, "the connection to end", func() bool { return p.Status()[0].Active == 0 })
		})
	}
}

// TestLoopDialSoErrorOnlyOnFailure checks that the loop reads a connect's
// SO_ERROR only when epoll reports an error or a hang-up: a connect that
// succeeded costs no getsockopt, one refused is still told apart.
func TestLoopDialSoErrorOnlyOnFailure(t *testing.T) {
	useLoopMode(t, true)
	var reads atomic.Int64
	testHookSoError = func() { reads.Add(1) }
	t.Cleanup(func() { testHookSoError = nil }) // after the proxy's cleanup: no loop left to call it
	p, al := newProxy(t, testConfig(t))
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst,
		Backends: []Backend{{Node: "b", Addr: startBackend(t, echo)}}}})
	addr := al.addr(t, "auto:svc")
	const n = 20
	for i := range n {
		if got, want := roundTrip(t, addr, fmt.Sprint(i)), fmt.Sprint(i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	waitFor(t, "the connections to end", func() bool { return p.Status()[0].Active == 0 })
	if got := reads.Load(); got != 0 {
		t.Errorf("%d connects that succeeded: %d SO_ERROR reads, want 0", n, got)
	}
	// A refused connect still reads it, and fails over.
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst,
		Backends: []Backend{{Node: "dead", Addr: closedAddr(t)}, {Node: "b", Addr: startBackend(t, echo)}}}})
	if got := roundTrip(t, addr, "x"); got != "x" {
		t.Fatalf("got %q, want %q", got, "x")
	}
	if st := p.Status()[0]; reads.Load() == 0 || st.DialErrors != 1 {
		t.Errorf("refused connect: %d SO_ERROR reads, DialErrors %d; want > 0, 1", reads.Load(), st.DialErrors)
	}
}

// TestRawAcceptOnlyPlainRoutes checks which listeners take the raw
// accept path: a route whose backends are all services at IP addresses,
// not one to a peer's data port or with a Handshake.
func TestRawAcceptOnlyPlainRoutes(t *testing.T) {
	useLoopMode(t, true)
	p, _ := newProxy(t, testConfig(t))
	backend := startBackend(t, echo)
	p.Update([]Route{
		{Service: "plain", Listen: "auto:plain", Backends: []Backend{{Addr: backend}}},
		{Service: "peer", Listen: "auto:peer", Backends: []Backend{{Addr: backend, Service: "svc"}}},
		{Service: "name", Listen: "auto:name", Backends: []Backend{{Addr: "localhost:1"}}},
		{Service: "hs", Listen: "auto:hs", Backends: []Backend{{Addr: backend}},
			Handshake: func(_ context.Context, c, b net.Conn) (net.Conn, net.Conn, error) { return c, b, nil }},
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, want := range map[string]bool{"auto:plain": true, "auto:peer": false, "auto:name": false, "auto:hs": false} {
		if got := p.routes[key].ln.raw != nil; got != want {
			t.Errorf("%s: raw accept %v, want %v", key, got, want)
		}
	}
}

// TestRawAcceptBurst checks that a burst of connects, more than one
// accept4 per wake-up, is served in full.
func TestRawAcceptBurst(t *testing.T) {
	useLoopMode(t, true)
	const n = 200
	p, al := newProxy(t, testConfig(t))
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: startBackend(t, echo)}}}})
	addr := al.addr(t, "auto:svc")
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			msg := fmt.Sprint(i)
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				t.Error(err)
				return
			}
			_ = c.(*net.TCPConn).CloseWrite()
			if b, err := io.ReadAll(c); err != nil || string(b) != msg {
				t.Errorf("read %q, %v; want %q", b, err, msg)
			}
		})
	}
	wg.Wait()
	waitFor(t, "every connection to end", func() bool {
		st := p.Status()[0]
		return st.Accepted == n && st.Active == 0
	})
	if st := p.Status()[0]; st.DialErrors != 0 || st.BytesIn != st.BytesOut {
		t.Errorf("DialErrors %d, BytesIn %d, BytesOut %d", st.DialErrors, st.BytesIn, st.BytesOut)
	}
}

// When no event loop can start (out of descriptors when the first
// connection came, say) a raw-accepted connection is still served, on the
// goroutine path, not reset.
func TestRawAcceptWithoutLoops(t *testing.T) {
	useLoopMode(t, true)
	p, al := newProxy(t, testConfig(t))
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: startBackend(t, echo)}}}})
	addr := al.addr(t, "auto:svc")
	p.g.loops.mu.Lock()
	p.g.loops.closed = true // as pick leaves it when no newEvLoop succeeds
	p.g.loops.mu.Unlock()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v; want the echo", b, err)
	}
}

// A conn made from a descriptor whose peer already reset has no remote
// address (getpeername fails), unlike one from Go's Accept; remoteAddr
// must not dereference it.
func TestRemoteAddrOfResetFileConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close() // RST
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after the peer's reset succeeded")
	}
	fc, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if fc.RemoteAddr() != nil {
		t.Skipf("this kernel still names the reset peer (%v): nothing to check", fc.RemoteAddr())
	}
	if got := remoteAddr(fc); got != "" {
		t.Errorf("remoteAddr = %q, want empty", got)
	}
}

// TestRawAcceptClosedListener checks that a raw listener taken out of the
// routes stops accepting at once, while a stream it accepted before goes
// on, and the other listener still serves. (Written for session 10's
// accept-in-the-loop experiment, whose listener close had to take the
// socket out of a loop's epoll; it holds for the accept goroutine too.)
func TestRawAcceptClosedListener(t *testing.T) {
	useLoopMode(t, true)
	p, al := newProxy(t, testConfig(t))
	backend := startBackend(t, echo)
	a := Route{Service: "a", Listen: "auto:a", Backends: []Backend{{Addr: backend}}}
	b := Route{Service: "b", Listen: "auto:b", Backends: []Backend{{Addr: backend}}}
	p.Update([]Route{a, b})
	addrA, addrB := al.addr(t, "auto:a"), al.addr(t, "auto:b")
	old := dial(t, addrB)
	defer old.Close()
	ping(t, old, "before")
	p.Update([]Route{a})
	if c, err := net.DialTimeout("tcp", addrB, time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s after its route was removed: connected", addrB)
	}
	ping(t, old, "after")
	c := dial(t, addrA)
	defer c.Close()
	ping(t, c, "a")
}

// closedLog keeps the Debug "connection closed" records of a logger.
type closedLog struct {
	slog.Handler
	mu   *sync.Mutex
	errs *[]error // the err attribute of each record; nil when it had none
}

func newClosedLog(t *testing.T) (*slog.Logger, func() []error) {
	cl := closedLog{Handler: slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}),
		mu: new(sync.Mutex), errs: new([]error)}
	return slog.New(cl), func() []error {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return slices.Clone(*cl.errs)
	}
}

func (c closedLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelDebug && r.Message == "connection closed" {
		var err error
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				err, _ = a.Value.Any().(error)
			}
			return true
		})
		c.mu.Lock()
		*c.errs = append(*c.errs, err)
		c.mu.Unlock()
	}
	return c.Handler.Handle(ctx, r)
}

func (c closedLog) WithAttrs(as []slog.Attr) slog.Handler {
	c.Handler = c.Handler.WithAttrs(as)
	return c
}

// TestLoopDialClientResetLogged checks that a client that resets while
// the loop still waits for the backend's connect, which the loop counts
// as a stream error and passes on as a reset, is also logged at Debug
// with its error, as every other stream error is.
func TestLoopDialClientResetLogged(t *testing.T) {
	useLoopMode(t, true)
	silent, _ := silentBackend(t)
	cfg := testConfig(t)
	cfg.DialTimeout, cfg.DialAttempt = 10*time.Second, 0 // the connect stays in the loop
	log, closed := newClosedLog(t)
	cfg.Logger = log
	p, al := newProxy(t, cfg)
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: silent}}}})
	c := dial(t, al.addr(t, "auto:svc"))
	waitFor(t, "the connection accepted", func() bool { return p.Status()[0].Accepted == 1 })
	abortConn(t, c)
	waitFor(t, "the connection to end", func() bool { return p.Status()[0].Active == 0 })
	if st := p.Status()[0]; st.StreamErrors != 1 || st.DialErrors != 0 {
		t.Fatalf("StreamErrors %d, DialErrors %d; want 1, 0", st.StreamErrors, st.DialErrors)
	}
	errs := closed()
	if len(errs) != 1 || !errors.Is(errs[0], syscall.ECONNRESET) {
		t.Fatalf("logged %d \"connection closed\" records with errors %v; want one, with ECONNRESET", len(errs), errs)
	}
}
