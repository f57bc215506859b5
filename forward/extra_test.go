package forward

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// warnCounter counts Warn records by message.
type warnCounter struct {
	slog.Handler
	mu     *sync.Mutex
	counts map[string]int
}

func newWarnCounter(t *testing.T) (*slog.Logger, func(msg string) int) {
	wc := warnCounter{
		Handler: slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}),
		mu:      new(sync.Mutex),
		counts:  make(map[string]int),
	}
	return slog.New(wc), func(msg string) int {
		wc.mu.Lock()
		defer wc.mu.Unlock()
		return wc.counts[msg]
	}
}

func (w warnCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		w.mu.Lock()
		w.counts[r.Message]++
		w.mu.Unlock()
	}
	return w.Handler.Handle(ctx, r)
}

func (w warnCounter) WithAttrs(as []slog.Attr) slog.Handler {
	w.Handler = w.Handler.WithAttrs(as)
	return w
}

func TestWarnsOnce(t *testing.T) {
	cfg := testConfig(t)
	log, warns := newWarnCounter(t)
	cfg.Logger = log
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	p, al := newProxy(t, cfg)
	clk := useFakeClock(p)
	routes := []Route{
		{Service: "busy", Listen: busy.Addr().String(), Backends: []Backend{{Addr: closedAddr(t)}}},
		{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst,
			Backends: []Backend{{Node: "dead", Addr: closedAddr(t)}, {Addr: startBackend(t, reply("ok"))}}},
	}
	for range 3 {
		p.Update(routes)
	}
	if got := warns("listen failed, will retry on the next update"); got != 1 {
		t.Errorf("listen failure warnings: got %d, want 1", got)
	}
	for range 3 {
		if got := roundTrip(t, al.addr(t, "auto:svc"), ""); got != "ok" {
			t.Fatalf("got %q, want %q", got, "ok")
		}
		clk.advance(time.Minute) // past the ejection, so the dead backend is dialed again
	}
	if got := p.Status()[1].DialErrors; got != 3 {
		t.Errorf("DialErrors: got %d, want 3", got)
	}
	if got := warns("backend dial failed, trying the next"); got != 1 {
		t.Errorf("dial failure warnings: got %d, want 1 per 10s", got)
	}
}

func TestInvalidListen(t *testing.T) {
	p, _ := newProxy(t, testConfig(t))
	for _, listen := range []string{"", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:"} {
		p.Update([]Route{{Service: "svc", Listen: listen, Backends: []Backend{{Addr: "127.0.0.1:1"}}}})
		st := p.Status()
		if len(st) != 1 || st[0].State != StateError || !strings.Contains(st[0].Err, `Listen "`+listen+`"`) {
			t.Errorf("Listen %q: got %+v, want state %q naming it", listen, st, StateError)
		}
	}
}

func TestMaxConns(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConns = 1
	p, al := newProxy(t, cfg)
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: startBackend(t, echo)}}}})
	addr := al.addr(t, "auto:svc")
	c1 := dial(t, addr)
	ping(t, c1, "one")
	c2 := dial(t, addr) // the kernel completes the handshake; the proxy does not accept yet
	io.WriteString(c2, "two")
	c2.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := c2.Read(make([]byte, 3)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second conn over MaxConns: got %v, want no answer yet", err)
	}
	c1.Close()
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 3)
	if _, err := io.ReadFull(c2, b); err != nil || string(b) != "two" {
		t.Fatalf("second conn after the first closed: got %q, %v", b, err)
	}
	if got := p.Status()[0].Accepted; got != 2 {
		t.Errorf("Accepted: got %d, want 2", got)
	}
}

// flakyListener fails Accept a few times, then blocks until closed.
type flakyListener struct {
	net.Listener
	fails   int
	accepts atomic.Int32
	closed  chan struct{}
	once    sync.Once
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if int(f.accepts.Add(1)) <= f.fails {
		return nil, errors.New("accept: too many open files")
	}
	<-f.closed
	return nil, net.ErrClosed
}

func (f *flakyListener) Close() error {
	f.once.Do(func() { close(f.closed) })
	return f.Listener.Close()
}

func TestAcceptBackoff(t *testing.T) {
	fl := &flakyListener{fails: 3, closed: make(chan struct{})}
	cfg := testConfig(t)
	cfg.ListenFunc = func(ctx context.Context, network, _ string) (net.Listener, error) {
		ln, err := (&net.ListenConfig{}).Listen(ctx, network, "127.0.0.1:0")
		fl.Listener = ln
		return fl, err
	}
	p, _ := newProxy(t, cfg)
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: "127.0.0.1:1"}}}})
	start := time.Now()
	waitFor(t, "accept retried after errors", func() bool { return fl.accepts.Load() > int32(fl.fails) })
	if d := time.Since(start); d < 5*time.Millisecond+10*time.Millisecond+20*time.Millisecond {
		t.Errorf("3 failed accepts retried within %v, want backoff 5ms, 10ms, 20ms", d)
	}
	if err := p.Shutdown(t.Context()); err != nil { // the accept loop must exit on ErrClosed
		t.Fatalf("Shutdown: %v", err)
	}
}
