package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

func TestServerHandoff(t *testing.T) {
	backend := startBackend(t, reply("hi"))
	var (
		mu     sync.Mutex
		dialed []string
	)
	cfg := testConfig(t)
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	dead := closedAddr(t)
	s := newServer(t, cfg, map[string]string{"web": backend, "gone": dead})
	addr := s.Addr().String()

	for _, tc := range []struct {
		name  string
		send  string
		want  handoffStatus
		reply string // read after an ok status
		dial  string // the one address the server may dial; "" = none
	}{
		{"ok", "AMB\x01\x03web", statusOK, "hi", backend},
		{"unknown service", "AMB\x01\x05nope1", statusUnknown, "", ""},
		{"backend unavailable", "AMB\x01\x04gone", statusUnavailable, "", dead},
		{"address as name", "AMB\x01\x0e127.0.0.1:6379", statusBadHeader, "", ""},
		{"bad magic", "GET /", statusBadHeader, "", ""},
		{"bad version", "AMB\x00\x03web", statusBadHeader, "", ""},
		{"zero length", "AMB\x01\x00", statusBadHeader, "", ""},
		{"length 64", "AMB\x01\x40", statusBadHeader, "", ""},
		{"invalid chars", "AMB\x01\x03w b", statusBadHeader, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			dialed = nil
			mu.Unlock()
			c := dial(t, addr)
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			if st := readStatus(t, c); st != tc.want {
				t.Fatalf("status: got %v, want %v", st, tc.want)
			}
			// The server closes after any non-ok status. Header bytes it did
			// not read turn that close into a reset, after the status byte.
			b, err := io.ReadAll(c)
			if tc.want != statusOK && errors.Is(err, syscall.ECONNRESET) {
				err = nil
			}
			if err != nil || string(b) != tc.reply {
				t.Fatalf("after status: got %q, %v, want %q", b, err, tc.reply)
			}
			mu.Lock()
			defer mu.Unlock()
			var want []string
			if tc.dial != "" {
				want = []string{tc.dial}
			}
			if !slices.Equal(dialed, want) {
				t.Errorf("dialed: got %q, want %q", dialed, want)
			}
		})
	}
}

func TestServerHandoffTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.HandoffTimeout = 100 * time.Millisecond
	s := newServer(t, cfg, map[string]string{"web": startBackend(t, echo)})
	for _, tc := range []struct{ name, send string }{
		{"nothing", ""},
		{"partial header", "AMB\x01\x05we"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s.Addr().String())
			start := time.Now()
			io.WriteString(c, tc.send)
			b, err := io.ReadAll(c)
			if err != nil || len(b) != 0 {
				t.Fatalf("read: got %q, %v, want a close with no status", b, err)
			}
			if d := time.Since(start); d < cfg.HandoffTimeout {
				t.Errorf("closed after %v, before HandoffTimeout %v", d, cfg.HandoffTimeout)
			}
		})
	}
}

func TestServerLifecycle(t *testing.T) {
	s, err := NewServer(testConfig(t), func(svcname.Name) ([]string, bool) { return nil, false })
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Errorf("Addr before Start: got %v, want nil", s.Addr())
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = s.Start(t.Context(), busy.Addr().String())
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Start on a busy port: got %v, want an error naming %s", err, busy.Addr())
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Start(t.Context(), "127.0.0.1:0"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Start after Shutdown: got %v, want net.ErrClosed", err)
	}
	if err := s.Shutdown(t.Context()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Shutdown: got %v, want net.ErrClosed", err)
	}
	if _, err := NewServer(DefaultConfig(), nil); err == nil {
		t.Error("NewServer with nil lookup: got nil error")
	}
}

// TestServerManyHalfOpen holds two thousand connections to the data port
// that never finish their header (half a header, or nothing at all): a
// real handoff still goes through while they wait, and every one of them
// is closed by the handoff deadline, goroutines included.
func TestServerManyHalfOpen(t *testing.T) {
	backend := startBackend(t, reply("hi"))
	cfg := testConfig(t)
	cfg.HandoffTimeout = 500 * time.Millisecond
	s := newServer(t, cfg, map[string]string{"web": backend})
	addr := s.Addr().String()
	before := runtime.NumGoroutine()

	const n = 2000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 0 {
			_, _ = io.WriteString(c, "AMB\x01") // half a header
		}
		conns = append(conns, c)
	}
	c := dial(t, addr)
	if _, err := io.WriteString(c, "AMB\x01\x03web"); err != nil {
		t.Fatal(err)
	}
	if st := readStatus(t, c); st != statusOK {
		t.Fatalf("handoff among %d half-open connections: status %v", n, st)
	}
	if b, _ := io.ReadAll(c); string(b) != "hi" {
		t.Fatalf("handoff among %d half-open connections: got %q", n, b)
	}
	c.Close()
	for i, hc := range conns {
		_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(hc); err != nil {
			t.Fatalf("half-open connection %d was not closed by the server: %v", i, err)
		}
	}
	waitFor(t, "the server's goroutines for the half-open connections to end", func() bool {
		return runtime.NumGoroutine() <= before+5
	})
}
