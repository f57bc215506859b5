//go:build linux

package forward

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"golang.org/x/sys/unix"
)

// TestLoopTLSReadsWhatTLSBuffered checks that bytes crypto/tls read from
// the socket before the loop took the stream over (records that came in
// one read with the handoff's reply, say a server that speaks first) are
// passed on at once: no edge will announce them.
func TestLoopTLSReadsWhatTLSBuffered(t *testing.T) {
	useLoopMode(t, true)
	tp := newTLSPair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan struct{})
	var sentBytes atomic.Int64 // all the peer wrote, handshake included
	peerGot := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		cc := &halfCloser{Conn: c} // counts what it writes
		ts := tls.Server(cc, tp.server)
		for _, rec := range []string{"AB", "CD"} { // two records
			if _, err := ts.Write([]byte(rec)); err != nil {
				close(sent)
				return
			}
		}
		sentBytes.Store(cc.written.Load())
		close(sent)
		var b [1]byte
		_, _ = io.ReadFull(ts, b[:])
		peerGot <- string(b[:])
		_, _ = ts.Write([]byte("E"))
		_ = ts.CloseWrite() // close_notify: a clean end
		_, _ = io.Copy(io.Discard, ts)
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close() // ends the peer's read on an early failure; a no-op once the loop closed it
	conf, _ := tp.client(Backend{})
	tc := tls.Client(sysConnOf(raw), conf)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	<-sent
	waitReceived(t, raw.(*net.TCPConn), sentBytes.Load()) // both records in the socket
	var first [1]byte
	if _, err := io.ReadFull(tc, first[:]); err != nil || first[0] != 'A' {
		t.Fatalf("first byte %q, %v", first[:], err)
	}
	// TLS holds "B" now (and "CD", read in the same call).

	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pln.Close()
	near, err := net.Dial("tcp", pln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	far, err := pln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()

	var ls evLoops
	defer ls.stop()
	cfg := DefaultConfig()
	ended := make(chan endReason, 1)
	if !ls.start(tc, near, copyOpts{cfg: &cfg, stats: &streamStats{}}, func(_, _ int64, end endReason, _ error) { ended <- end }) {
		t.Fatal("the loop did not take the keyed stream")
	}
	_ = far.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 3)
	if _, err := io.ReadFull(far, got); err != nil || string(got) != "BCD" {
		t.Fatalf("bytes TLS had buffered: %q, %v; want %q", got, err, "BCD")
	}
	// The rest of the stream's life: a byte each way, then clean ends.
	if _, err := far.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if g := <-peerGot; g != "x" {
		t.Fatalf("TLS peer got %q, want %q", g, "x")
	}
	rest, err := io.ReadAll(far)
	if err != nil || string(rest) != "E" {
		t.Fatalf("after the peer's close_notify: %q, %v; want %q, then EOF", rest, err, "E")
	}
	_ = far.(*net.TCPConn).CloseWrite()
	select {
	case end := <-ended:
		if end != endClean {
			t.Fatalf("stream ended %v, want clean", end)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end after both clean ends")
	}
}

// waitReceived waits until c's socket has received n bytes in all (read
// or not), as the kernel counts them (TCP_INFO), for at most 5 s.
func waitReceived(t *testing.T, c *net.TCPConn, n int64) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		var got uint64
		var gerr error
		if err := rc.Control(func(fd uintptr) {
			var info *unix.TCPInfo
			if info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); gerr == nil {
				got = info.Bytes_received
			}
		}); err != nil || gerr != nil {
			t.Fatalf("TCP_INFO: %v, %v", err, gerr)
		}
		if int64(got) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket received %d of %d bytes within 5s", got, n)
		}
		time.Sleep(time.Millisecond) // polling the kernel's count
	}
}

// TestKeyedOnGoroutines runs the stream tests, keyed topology included,
// with the event loop off (AMBASSADOR_FORWARD_LOOP=0): the goroutine copy
// over TLS is still the path of Route.Handshake wrappers and of other
// systems, and since the loop took keyed streams over, nothing else runs
// it here.
func TestKeyedOnGoroutines(t *testing.T) {
	useLoopMode(t, false)
	for name, test := range map[string]func(*testing.T){
		"EndToEnd": TestEndToEnd, "ResetPropagates": TestResetPropagates,
		"IdleTimeout": TestIdleTimeout, "HalfCloseTimeout": TestHalfCloseTimeout,
	} {
		t.Run(name, test)
	}
}

// TestTLSPeerGoneWithoutCloseNotify: a keyed hop's peer whose connection
// ends with a bare FIN, without close_notify (its process killed with
// nothing unread, its host's TCP closing the socket), cut the stream off:
// the other side must read a reset, on the event loop and on goroutines.
// Between ambassadors a clean end always sends close_notify, which
// TestEndToEnd and TestLoopTLSReadsWhatTLSBuffered keep a clean end.
func TestTLSPeerGoneWithoutCloseNotify(t *testing.T) {
	for _, loop := range []bool{true, false} {
		t.Run(fmt.Sprintf("loop=%v", loop), func(t *testing.T) {
			useLoopMode(t, loop)
			t.Run("far ambassador gone", func(t *testing.T) {
				tp := newTLSPair(t)
				// The far ambassador: answers the handoff, sends part of a
				// reply, then its socket closes under TLS. It waits for the
				// client's dial to return first: on a busy machine the
				// whole exchange could otherwise end, and the reset reach
				// the client, before its connect had read SO_ERROR, and
				// the dial itself would fail with the reset.
				dialed := make(chan struct{})
				far := startBackend(t, func(c *net.TCPConn) {
					ts := tls.Server(c, tp.server)
					if _, err := readHandoff(ts); err != nil {
						return
					}
					select {
					case <-dialed:
					case <-time.After(5 * time.Second):
					}
					if _, err := ts.Write([]byte{byte(statusOK)}); err != nil {
						return
					}
					_, _ = ts.Write([]byte("partial reply"))
				}) // startBackend closes c: a FIN, no close_notify
				cfg := testConfig(t)
				cfg.ClientTLS = tp.client
				p, al := newProxy(t, cfg)
				p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Node: "b", Addr: far, Service: "svc"}}}})
				c := dial(t, al.addr(t, "auto:svc"))
				close(dialed)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				b, err := io.ReadAll(c)
				if !isReset(err) {
					t.Fatalf("client read %q, then %v; want ECONNRESET", b, err)
				}
			})
			t.Run("near ambassador gone", func(t *testing.T) {
				tp := newTLSPair(t)
				got := make(chan error, 1)
				backend := startBackend(t, func(c *net.TCPConn) {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					b, err := io.ReadAll(c)
					if err == nil {
						err = fmt.Errorf("read %q, then a clean end", b)
					}
					got <- err
				})
				cfg := testConfig(t)
				cfg.ServerTLS = tp.server
				s := newServer(t, cfg, map[string]string{"svc": backend})
				raw, err := net.Dial("tcp", s.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				conf, _ := tp.client(Backend{})
				tc := tls.Client(raw, conf)
				hdr, err := appendHandoff(nil, svcname.Must("svc"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tc.Write(append(hdr, "partial request"...)); err != nil {
					t.Fatal(err)
				}
				var st [1]byte
				if _, err := io.ReadFull(tc, st[:]); err != nil || handoffStatus(st[0]) != statusOK {
					t.Fatalf("handoff: %v, %v", handoffStatus(st[0]), err)
				}
				_ = raw.Close() // a FIN under TLS, no close_notify
				if err := <-got; !isReset(err) {
					t.Fatalf("backend: %v; want ECONNRESET", err)
				}
			})
		})
	}
}

// TestLoopFlushToTLSIsActivity: writing a TLS destination's pending
// ciphertext is activity for IdleTimeout and HalfCloseTimeout, as a
// plain flush is. TLS counts the plaintext when it takes it, so such a
// flush counted nothing, and a stream whose reply still moved to a slow
// TLS peer, after the client's half-close, was reset once the loop had
// waited on that peer for HalfCloseTimeout.
func TestLoopFlushToTLSIsActivity(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var l evLoop
	e := &econn{fd: [2]int{-1, fds[0]}, stats: &streamStats{}, last: 1, tidx: -1}
	e.tls[1] = tls.Client(nil, &tls.Config{}) // only its presence matters to flush
	e.dir[0].keep([]byte("ciphertext"))
	l.now = 12345
	l.flush(e, 0)
	if e.dir[0].pending() {
		t.Fatal("the socket took nothing")
	}
	if e.last != l.now {
		t.Fatalf("last activity %d after the flush, want the loop's now %d", e.last, l.now)
	}
	var got [32]byte
	if n, err := unix.Read(fds[1], got[:]); err != nil || string(got[:n]) != "ciphertext" {
		t.Fatalf("peer read %q, %v", got[:n], err)
	}
}
