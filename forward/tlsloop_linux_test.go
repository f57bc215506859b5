//go:build linux

package forward

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
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
	peerGot := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		ts := tls.Server(c, tp.server)
		for _, rec := range []string{"AB", "CD"} { // two records
			if _, err := ts.Write([]byte(rec)); err != nil {
				close(sent)
				return
			}
		}
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
	conf, _ := tp.client(Backend{})
	tc := tls.Client(sysConnOf(raw), conf)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	<-sent
	time.Sleep(50 * time.Millisecond) // both records in the socket
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
