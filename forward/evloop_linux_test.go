package forward

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// streams counts the streams ls's loops own now.
func (ls *evLoops) streams() int {
	ls.mu.Lock()
	loops := ls.loops
	ls.mu.Unlock()
	n := 0
	for _, l := range loops {
		l.mu.Lock()
		n += len(l.conns) / 2 // both sockets of a stream are in conns
		l.mu.Unlock()
	}
	return n
}

// useLoopMode sets loopMode for one test.
func useLoopMode(t *testing.T, on bool) {
	t.Helper()
	old := loopMode
	loopMode = on
	t.Cleanup(func() { loopMode = old })
}

// TestLoopOwnsPlainStreams checks that plain TCP streams, on both hops,
// are run by the event loops, and so are keyed (TLS) streams
// (tlsloop_linux.go).
func TestLoopOwnsPlainStreams(t *testing.T) {
	useLoopMode(t, true)
	for _, tc := range []struct {
		topo          string
		proxy, server int
	}{{"direct", 1, 0}, {"handoff", 1, 1}, {"handoff-tls", 1, 1}} {
		t.Run(tc.topo, func(t *testing.T) {
			h := buildHops(t, tc.topo, startBackend(t, echo), func(*Config) {})
			c := dial(t, h.addr)
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			if got := h.p.g.loops.streams(); got != tc.proxy {
				t.Errorf("proxy's loops own %d streams, want %d", got, tc.proxy)
			}
			if h.s != nil {
				if got := h.s.g.loops.streams(); got != tc.server {
					t.Errorf("server's loops own %d streams, want %d", got, tc.server)
				}
			}
			_ = c.CloseWrite()
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("read to the end: %v", err)
			}
			waitFor(t, "the streams to leave the loops", func() bool {
				return h.p.g.loops.streams() == 0 && (h.s == nil || h.s.g.loops.streams() == 0)
			})
		})
	}
}

// TestLoopIdleHoldsNoGoroutine checks that an idle connection on the
// event loop, plain or keyed (both hops), holds no goroutine (its stack
// was most of an idle connection's memory), and that the goroutine copy
// does hold them, so the count can tell the two apart.
func TestLoopIdleHoldsNoGoroutine(t *testing.T) {
	const n = 40
	for _, tc := range []struct {
		name, topo string
		loop       bool
		growth     func(d int) bool
	}{
		{"loop", "direct", true, func(d int) bool { return d < n/4 }},
		{"loop keyed", "handoff-tls", true, func(d int) bool { return d < n/4 }},
		{"goroutines", "direct", false, func(d int) bool { return d >= n }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useLoopMode(t, tc.loop)
			backend := startBackend(t, echo) // a goroutine per conn, counted below
			h := buildHops(t, tc.topo, backend, func(*Config) {})
			roundTrip(t, h.addr, "warm up") // starts the loops
			before := runtime.NumGoroutine()
			for range n {
				c := dial(t, h.addr)
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "every connection listed", func() bool { return len(h.p.Connections()) == n })
			// The backend's echo goroutines are n of the growth.
			d := runtime.NumGoroutine() - before - n
			if !tc.growth(d) {
				t.Errorf("%d idle connections: %d goroutines more in the proxy", n, d)
			}
		})
	}
}

// TestLoopBackpressure checks that a stream whose destination does not
// read keeps every byte: the loop's short writes park bytes in a pending
// buffer or pipe and stop reading the source until they are written.
func TestLoopBackpressure(t *testing.T) {
	useLoopMode(t, true)
	const size = 16 << 20
	data := randBytes(t, size)
	backend := startBackend(t, func(c *net.TCPConn) {
		_, _ = c.Write(data)
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	for _, topo := range []string{"direct", "handoff", "handoff-tls"} {
		t.Run(topo, func(t *testing.T) {
			h := buildHops(t, topo, backend, func(*Config) {})
			c := dial(t, h.addr)
			// Wait until the bytes in flight stop at the full socket buffers.
			var last uint64
			waitFor(t, "the stream to stall on the client's full buffer", func() bool {
				cs := h.p.Connections()
				if len(cs) != 1 || cs[0].BytesOut == 0 || cs[0].BytesOut == size {
					return false
				}
				stalled := cs[0].BytesOut == last
				last = cs[0].BytesOut
				return stalled
			})
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, want the %d sent, intact", len(got), size)
			}
		})
	}
}

// TestLoopStopAfterWakeStorm checks that a stop is never lost among
// concurrent wakes. A wake that lands between the loop's clearing of its
// pending flag and its read of the eventfd had its write consumed by that
// read while the flag stayed set, so every later wake, the stop's too,
// skipped its write and the loop slept for ever (Proxy.Shutdown hung in
// evLoops.stop).
func TestLoopStopAfterWakeStorm(t *testing.T) {
	for round := range 200 {
		l, err := newEvLoop()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { l.run(); close(done) }()
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for range 200 {
					l.wake()
					runtime.Gosched()
				}
			})
		}
		wg.Wait()
		l.mu.Lock()
		l.stop = true
		l.mu.Unlock()
		l.wake()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the loop missed its stop after concurrent wakes", round)
		}
	}
}

// TestPipePool checks that a pipe from the pool has pipeSize when the
// system lets us ask for that much (fs.pipe-max-size), and that the pool
// keeps no more than maxIdlePipes idle: each counts its full size against
// the user's pipe quota. A guard: it passes on the code before it.
func TestPipePool(t *testing.T) {
	maxSize, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		t.Skipf("no fs.pipe-max-size: %v", err)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(maxSize))); n < pipeSize {
		t.Skipf("fs.pipe-max-size is %d, under %d", n, pipeSize)
	}
	var got []*pipe
	for range maxIdlePipes + 4 {
		p, err := getPipe()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if got[0].size != pipeSize {
		t.Errorf("pipe size %d, want %d", got[0].size, pipeSize)
	}
	for _, p := range got {
		putPipe(p)
	}
	pipes.mu.Lock()
	idle := len(pipes.free)
	pipes.mu.Unlock()
	if idle > maxIdlePipes {
		t.Errorf("%d idle pipes kept, want at most %d", idle, maxIdlePipes)
	}
}
