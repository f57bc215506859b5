//go:build linux

package forward

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestSysConn checks that sysConn, the raw-syscall socket under a keyed
// hop's TLS, reads and writes as a *net.TCPConn does: bytes intact both
// ways, also a write larger than the socket buffers (EAGAIN, then the
// poller); a FIN as io.EOF; a reset, a passed deadline and a closed conn
// as errors that errors.Is tells apart, as stream.copy and tls.Conn need.
func TestSysConn(t *testing.T) {
	t.Run("bytes both ways, large write", func(t *testing.T) {
		a, b := tcpPair(t)
		sc := sysConnOf(a)
		if _, ok := sc.(*sysConn); !ok {
			t.Fatalf("sysConnOf(*net.TCPConn) = %T", sc)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
		done := make(chan error, 1)
		go func() {
			_, err := sc.Write(big)
			done <- err
		}()
		got := make([]byte, len(big))
		if _, err := io.ReadFull(b, got); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil || !bytes.Equal(got, big) {
			t.Fatalf("write: %v; intact: %v", err, bytes.Equal(got, big))
		}
		if _, err := b.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		if n, err := sc.Read(buf); err != nil || string(buf[:n]) != "pong" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
	})
	for _, tc := range []struct {
		name string
		act  func(a *net.TCPConn, b *net.TCPConn)
		want func(error) bool
	}{
		{"FIN is io.EOF", func(_, b *net.TCPConn) { _ = b.CloseWrite() },
			func(err error) bool { return err == io.EOF }},
		{"reset is ECONNRESET", func(_, b *net.TCPConn) { _ = b.SetLinger(0); _ = b.Close() },
			func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{"passed deadline", func(a, _ *net.TCPConn) { _ = a.SetReadDeadline(time.Now().Add(-time.Second)) },
			func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
		{"closed", func(a, _ *net.TCPConn) { _ = a.Close() },
			func(err error) bool { return errors.Is(err, net.ErrClosed) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			sc := sysConnOf(a)
			tc.act(a, b)
			buf := make([]byte, 16)
			_, err := sc.Read(buf) // EAGAIN first, then the poller, for the FIN or reset

			if !tc.want(err) {
				t.Fatalf("read error %v (%T)", err, err)
			}
		})
	}
}
