package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hops is one client → backend path with the Proxy and, for the two-hop
// paths, the Server, so a test can read their counters.
type hops struct {
	addr string  // where the client dials
	p    *Proxy  // the client-side ambassador
	s    *Server // the data port; nil for "direct"
}

// buildHops builds one of the paths of topologies, with cfg changed
// by mod on every hop.
func buildHops(t *testing.T, name, backend string, mod func(*Config)) hops {
	t.Helper()
	pcfg, scfg := testConfig(t), testConfig(t)
	mod(&pcfg)
	mod(&scfg)
	var h hops
	b := Backend{Node: "a", Addr: backend}
	switch name {
	case "direct":
	case "handoff", "handoff-tls":
		if name == "handoff-tls" {
			tp := newTLSPair(t)
			scfg.ServerTLS, pcfg.ClientTLS = tp.server, tp.client
		}
		h.s = newServer(t, scfg, map[string]string{"svc": backend})
		b = Backend{Node: "b", Addr: h.s.Addr().String(), Service: "svc"}
	default:
		t.Fatalf("unknown topology %q", name)
	}
	var al *autoListen
	h.p, al = newProxy(t, pcfg)
	h.p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{b}}})
	h.addr = al.addr(t, "auto:svc")
	return h
}

// counts sums a stream counter over the Proxy's route and the Server.
func (h hops) counts(pick func(ListenerStatus) uint64, spick func(ServerStats) uint64) uint64 {
	var n uint64
	for _, st := range h.p.Status() {
		n += pick(st)
	}
	if h.s != nil {
		n += spick(h.s.Stats())
	}
	return n
}

func (h hops) streamErrors() uint64 {
	return h.counts(func(s ListenerStatus) uint64 { return s.StreamErrors }, func(s ServerStats) uint64 { return s.StreamErrors })
}

var topologyNames = []string{"direct", "handoff", "handoff-tls"}

// isReset reports whether err is what a reset looks like to a reader.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// abortConn resets c: SO_LINGER 0, then close, sends an RST.
func abortConn(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestResetPropagates checks that a reset on either end reaches the other
// end as a reset through every hop, plain and TLS, and counts as a stream
// error; the clean ends are in TestEndToEnd.
func TestResetPropagates(t *testing.T) {
	for _, topo := range topologyNames {
		t.Run(topo, func(t *testing.T) {
			t.Run("client resets", func(t *testing.T) {
				got := make(chan error, 1)
				backend := startBackend(t, func(c *net.TCPConn) {
					var b [1]byte
					if _, err := io.ReadFull(c, b[:]); err != nil {
						got <- err
						return
					}
					_, _ = c.Write(b[:]) // tells the client the path is up
					_, err := c.Read(b[:])
					got <- err
				})
				h := buildHops(t, topo, backend, func(*Config) {})
				c := dial(t, h.addr)
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				abortConn(t, c)
				if err := <-got; !isReset(err) {
					t.Fatalf("backend read after the client's reset: %v, want ECONNRESET", err)
				}
				waitFor(t, "a stream error on every hop", func() bool { return h.streamErrors() == uint64(hopCount(topo)) })
			})
			t.Run("backend resets", func(t *testing.T) {
				backend := startBackend(t, func(c *net.TCPConn) {
					var b [1]byte
					if _, err := io.ReadFull(c, b[:]); err == nil {
						_, _ = c.Write([]byte("partial reply"))
					}
					_ = c.SetLinger(0)
				}) // startBackend closes c: an RST
				h := buildHops(t, topo, backend, func(*Config) {})
				c := dial(t, h.addr)
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c)
				if !isReset(err) {
					t.Fatalf("client read after the backend's reset: %q, %v, want ECONNRESET", b, err)
				}
				waitFor(t, "a stream error on every hop", func() bool { return h.streamErrors() == uint64(hopCount(topo)) })
			})
		})
	}
}

func hopCount(topo string) int {
	if topo == "direct" {
		return 1
	}
	return 2
}

// TestIdleTimeout checks that a connection with no bytes either way for
// IdleTimeout is reset at both ends, and that traffic keeps it open.
func TestIdleTimeout(t *testing.T) {
	// Long against the traffic period below, so a loaded test machine
	// does not open gaps of a whole IdleTimeout.
	const idle = time.Second
	for _, topo := range topologyNames {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			got := make(chan error, 1)
			backend := startBackend(t, func(c *net.TCPConn) {
				_, err := io.Copy(c, c)
				got <- err
			})
			h := buildHops(t, topo, backend, func(c *Config) { c.IdleTimeout = idle })
			c := dial(t, h.addr)
			// Traffic every idle/3 for 2×idle keeps the connection open.
			start := time.Now()
			quiet := start // when the last byte moved
			for time.Since(start) < 3*idle/2 {
				time.Sleep(idle / 10) // the traffic pattern under test, not synchronization
				_, err := c.Write([]byte("x"))
				if err == nil {
					_, err = io.ReadFull(c, make([]byte, 1))
				}
				if err != nil {
					if gap := time.Since(quiet); gap > idle {
						// Not the proxy's fault: this goroutine stalled.
						t.Skipf("test machine stalled %v between echoes, more than IdleTimeout: %v", gap, err)
					}
					t.Fatalf("echo %v after start, %v after the last, within the idle timeout: %v", time.Since(start), time.Since(quiet), err)
				}
				quiet = time.Now()
			}
			_, err := c.Read(make([]byte, 1))
			if !isReset(err) {
				t.Fatalf("client read on an idle conn: %v, want ECONNRESET", err)
			}
			if d := time.Since(quiet); d < idle*9/10 { // the proxy saw the last byte a little before we did
				t.Errorf("reset after %v quiet, before IdleTimeout %v", d, idle)
			}
			if err := <-got; !isReset(err) {
				t.Errorf("backend copy ended with %v, want ECONNRESET", err)
			}
			// The hop whose timer fires first counts an idle timeout; the
			// other, if it has not timed out too, reads the reset that
			// timeout sent.
			var idles uint64
			waitFor(t, "every hop ended, by an idle timeout at least once", func() bool {
				idles = h.counts(func(s ListenerStatus) uint64 { return s.IdleTimeouts },
					func(s ServerStats) uint64 { return s.IdleTimeouts })
				return idles >= 1 && idles+h.streamErrors() == uint64(hopCount(topo))
			})
		})
	}
}

// TestHalfCloseTimeout checks that once the backend has half-closed, a
// client that stays silent is reset after HalfCloseTimeout, while a
// half-closed connection that keeps moving bytes stays open.
func TestHalfCloseTimeout(t *testing.T) {
	const hc = time.Second
	for _, topo := range topologyNames {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			backend, received := bannerBackend(t)
			h := buildHops(t, topo, backend, func(c *Config) { c.HalfCloseTimeout = hc })
			c := dial(t, h.addr)
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "banner" {
				t.Fatalf("read: %q, %v, want banner then EOF", b, err)
			}
			// Still open for the client's direction while bytes move.
			quiet := time.Now() // when the last byte was sent; the banner's EOF starts the clock
			for range 3 {
				time.Sleep(hc / 4) // the traffic pattern under test, not synchronization
				if _, err := c.Write([]byte("y")); err != nil {
					if gap := time.Since(quiet); gap > hc {
						t.Skipf("test machine stalled %v between writes, more than HalfCloseTimeout: %v", gap, err)
					}
					t.Fatalf("write in the open direction: %v", err)
				}
				quiet = time.Now()
			}
			var bp [1]byte
			var werr error
			for werr == nil && time.Since(quiet) < 10*time.Second {
				time.Sleep(20 * time.Millisecond) // polling for the reset, not synchronization
				_, werr = c.Write(bp[:0:1])
				if werr == nil {
					_, werr = c.Read(bp[:]) // EOF until the RST arrives
					if werr == io.EOF {
						werr = nil
					}
				}
			}
			if !isReset(werr) && !errors.Is(werr, syscall.EPIPE) {
				t.Fatalf("client after half-close timeout: %v, want a reset", werr)
			}
			if d := time.Since(quiet); d < hc*9/10 {
				t.Errorf("reset after %v quiet, before HalfCloseTimeout %v", d, hc)
			}
			if got := <-received; got != "yyy" {
				t.Errorf("backend got %q before the timeout, want %q", got, "yyy")
			}
			waitFor(t, "a half-close timeout counted", func() bool {
				return h.counts(func(s ListenerStatus) uint64 { return s.HalfCloseTimeouts },
					func(s ServerStats) uint64 { return s.HalfCloseTimeouts }) >= 1
			})
		})
	}
}

// TestFastPathPlainTCP checks that plain TCP conns are read straight from
// the socket (no buffer held while idle) and wrapped ones through Read.
func TestFastPathPlainTCP(t *testing.T) {
	var mu sync.Mutex
	var raw, wrapped int
	testHookRead = func(isRaw bool) {
		mu.Lock()
		defer mu.Unlock()
		if isRaw {
			raw++
		} else {
			wrapped++
		}
	}
	t.Cleanup(func() { testHookRead = nil })
	for _, tc := range []struct {
		topo         string
		raw, wrapped int
	}{{"direct", 2, 0}, {"handoff", 4, 0}, {"handoff-tls", 2, 2}} {
		t.Run(tc.topo, func(t *testing.T) {
			mu.Lock()
			raw, wrapped = 0, 0
			mu.Unlock()
			h := buildHops(t, tc.topo, startBackend(t, echo), func(*Config) {})
			if got := roundTrip(t, h.addr, "x"); got != "x" {
				t.Fatalf("got %q", got)
			}
			waitFor(t, "both directions of every hop started", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return raw+wrapped == tc.raw+tc.wrapped
			})
			mu.Lock()
			defer mu.Unlock()
			if raw != tc.raw || wrapped != tc.wrapped {
				t.Errorf("raw-socket reads %d, wrapped reads %d, want %d and %d", raw, wrapped, tc.raw, tc.wrapped)
			}
		})
	}
}

// TestSpliceBulkOnly checks that bulk data between plain sockets is
// spliced, that the bytes arrive intact, and that an idle connection,
// after a bulk transfer and with one still open, holds no pipe.
func TestSpliceBulkOnly(t *testing.T) {
	var spliced atomic.Int64
	testHookSplice = func(n int) { spliced.Add(int64(n)) }
	t.Cleanup(func() { testHookSplice = nil })
	const size = 8 << 20
	data := randBytes(t, size)
	got := make(chan []byte, 1)
	backend := startBackend(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		got <- b
		_, _ = c.Write([]byte("done"))
	})
	h := buildHops(t, "handoff", backend, func(*Config) {})
	c := dial(t, h.addr)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("backend got %d bytes, not the %d sent", len(b), size)
	}
	if n := spliced.Load(); n == 0 {
		t.Errorf("no byte of %d MiB was spliced", size>>20)
	}
	// A second connection moves a bulk transfer's worth and stays open,
	// idle: it must hold no pipe.
	idle := dial(t, h.addr)
	if _, err := idle.Write(data); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle connection open and every pipe back in the pool", func() bool {
		cs := h.p.Connections()
		return len(cs) == 1 && cs[0].BytesIn == size && pipes.out.Load() == 0
	})
}

// failingWriter is a Route.Handshake wrapper whose Write hands the
// first k bytes of its first call to the conn and then fails, as a write
// does when the peer resets partway through it.
type failingWriter struct {
	net.Conn
	k int
}

func (f *failingWriter) Write(b []byte) (int, error) {
	n, err := f.Conn.Write(b[:min(f.k, len(b))])
	if err == nil {
		err = syscall.ECONNRESET
	}
	return n, err
}

// TestCopyCountsOnlyWrittenBytes checks that a write that fails partway
// counts only the bytes it wrote: BytesIn and the connection's bytes_in
// say what reached the other side, not what was read.
func TestCopyCountsOnlyWrittenBytes(t *testing.T) {
	const msg = "hello, backend"
	for _, k := range []int{0, 5} {
		t.Run(fmt.Sprintf("%d of %d written", k, len(msg)), func(t *testing.T) {
			got := make(chan string, 1)
			backend := startBackend(t, func(c *net.TCPConn) {
				b, _ := io.ReadAll(c)
				got <- string(b)
			})
			p, al := newProxy(t, testConfig(t))
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: backend}},
				Handshake: func(_ context.Context, client, backend net.Conn) (net.Conn, net.Conn, error) {
					return client, &failingWriter{Conn: backend, k: k}, nil
				}}})
			c := dial(t, al.addr(t, "auto:svc"))
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(c); !isReset(err) {
				t.Fatalf("client read: %v, want ECONNRESET", err)
			}
			if b := <-got; b != msg[:k] {
				t.Fatalf("backend got %q, want %q", b, msg[:k])
			}
			waitFor(t, "the stream error counted", func() bool { return p.Status()[0].StreamErrors == 1 })
			if st := p.Status()[0]; st.BytesIn != uint64(k) {
				t.Errorf("BytesIn: got %d, want %d", st.BytesIn, k)
			}
		})
	}
}

// TestHalfCloseTimeoutStuckWriter checks that HalfCloseTimeout also ends
// a half-closed connection whose open direction moves nothing because
// its destination does not read: no direction is left reading then, so
// no read deadline can see the silence. The client half-closes and never
// reads; the backend's reply fills every buffer on the way.
func TestHalfCloseTimeoutStuckWriter(t *testing.T) {
	const hc = 300 * time.Millisecond
	reply := make([]byte, 64<<20) // more than every socket buffer on the path holds
	for _, loop := range []bool{true, false} {
		for _, topo := range topologyNames {
			t.Run(fmt.Sprintf("loop=%v/%s", loop, topo), func(t *testing.T) {
				useLoopMode(t, loop)
				got := make(chan error, 1)
				backend := startBackend(t, func(c *net.TCPConn) {
					_, _ = io.Copy(io.Discard, c)
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					_, err := c.Write(reply)
					got <- err
				})
				h := buildHops(t, topo, backend, func(c *Config) { c.HalfCloseTimeout = hc })
				c := dial(t, h.addr)
				if _, err := c.Write([]byte("request")); err != nil {
					t.Fatal(err)
				}
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				// A reset reads as EPIPE to a backend that has read our FIN.
				if err := <-got; !isReset(err) && !errors.Is(err, syscall.EPIPE) {
					t.Fatalf("backend's reply write: %v; want a reset once HalfCloseTimeout passed", err)
				}
				waitFor(t, "a half-close timeout counted", func() bool {
					return h.counts(func(s ListenerStatus) uint64 { return s.HalfCloseTimeouts },
						func(s ServerStats) uint64 { return s.HalfCloseTimeouts }) >= 1
				})
			})
		}
	}
}

// TestIdleTimeoutStuckWriters checks that IdleTimeout ends a connection
// both of whose directions move nothing because neither peer reads: both
// directions are then waiting to write, and no read deadline can see the
// silence.
func TestIdleTimeoutStuckWriters(t *testing.T) {
	const idle = 300 * time.Millisecond
	flood := make([]byte, 64<<20) // more than every socket buffer on the path holds
	for _, loop := range []bool{true, false} {
		for _, topo := range topologyNames {
			t.Run(fmt.Sprintf("loop=%v/%s", loop, topo), func(t *testing.T) {
				useLoopMode(t, loop)
				got := make(chan error, 1)
				backend := startBackend(t, func(c *net.TCPConn) {
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					_, err := c.Write(flood)
					got <- err
				})
				h := buildHops(t, topo, backend, func(c *Config) { c.IdleTimeout = idle })
				c := dial(t, h.addr)
				go func() { _, _ = c.Write(flood) }() // ends when the proxy resets c, or at cleanup
				if err := <-got; !isReset(err) {
					t.Fatalf("backend's write: %v; want a reset once IdleTimeout passed", err)
				}
				waitFor(t, "an idle timeout counted", func() bool {
					return h.counts(func(s ListenerStatus) uint64 { return s.IdleTimeouts },
						func(s ServerStats) uint64 { return s.IdleTimeouts }) >= 1
				})
			})
		}
	}
}

// TestResetAfterHalfClose checks that a peer that half-closes and then
// resets passes its reset on at once, even when the other peer stays
// silent: that peer has read the FIN, so only a reset tells it the
// stream was cut, and it may never write again to find out. Before, the
// goroutine path passed it on only when HalfCloseTimeout (here a minute)
// ended the stream.
func TestResetAfterHalfClose(t *testing.T) {
	const limit = 5 * time.Second // far below HalfCloseTimeout
	for _, loop := range []bool{true, false} {
		for _, topo := range topologyNames {
			t.Run(fmt.Sprintf("loop=%v/%s/client resets", loop, topo), func(t *testing.T) {
				useLoopMode(t, loop)
				gotEOF := make(chan struct{})
				got := make(chan error, 1)
				backend := startBackend(t, func(c *net.TCPConn) {
					if _, err := io.Copy(io.Discard, c); err != nil {
						got <- err
						return
					}
					close(gotEOF)
					got <- pollSocketError(c, limit) // silent: never writes
				})
				h := buildHops(t, topo, backend, func(c *Config) { c.HalfCloseTimeout = time.Minute })
				c := dial(t, h.addr)
				if _, err := c.Write([]byte("request")); err != nil {
					t.Fatal(err)
				}
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				<-gotEOF
				abortConn(t, c)
				if err := <-got; !isReset(err) && !errors.Is(err, syscall.EPIPE) {
					t.Fatalf("backend after the client's half-close and reset: %v, want a reset within %v", err, limit)
				}
				waitFor(t, "a stream error on every hop", func() bool { return h.streamErrors() == uint64(hopCount(topo)) })
			})
			t.Run(fmt.Sprintf("loop=%v/%s/backend resets", loop, topo), func(t *testing.T) {
				useLoopMode(t, loop)
				clientEOF := make(chan struct{})
				backend := startBackend(t, func(c *net.TCPConn) {
					if _, err := c.Write([]byte("reply")); err != nil {
						return
					}
					_ = c.CloseWrite()
					select {
					case <-clientEOF:
					case <-time.After(limit):
					}
					_ = c.SetLinger(0)
				}) // startBackend closes c: an RST
				h := buildHops(t, topo, backend, func(c *Config) { c.HalfCloseTimeout = time.Minute })
				c := dial(t, h.addr)
				b, err := io.ReadAll(c)
				if err != nil || string(b) != "reply" {
					t.Fatalf("client read: %q, %v, want reply then EOF", b, err)
				}
				close(clientEOF)
				if err := pollSocketError(c, limit); !isReset(err) && !errors.Is(err, syscall.EPIPE) {
					t.Fatalf("client after the backend's half-close and reset: %v, want a reset within %v", err, limit)
				}
				waitFor(t, "a stream error on every hop", func() bool { return h.streamErrors() == uint64(hopCount(topo)) })
			})
		}
	}
}

// pollSocketError polls c's pending socket error (SO_ERROR) until it is
// set or limit passes. A peer that has read the FIN reads EOF forever,
// even after an RST, so the socket error is how it sees the reset
// without writing.
func pollSocketError(c *net.TCPConn, limit time.Duration) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = socketError(fd) }); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
	}
	return fmt.Errorf("no socket error within %v", limit)
}
