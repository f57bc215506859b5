package creds

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection. Both are closed
// in t.Cleanup.
func tcpPair(t *testing.T) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		d.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { d.Close(); r.c.Close() })
	return d.(*net.TCPConn), r.c.(*net.TCPConn)
}

// setup is one forwarded connection: app talks to client (the ambassador's
// accepted conn), backend (the ambassador's dialed conn) talks to server.
type setup struct {
	app, client, backend, server *net.TCPConn
}

func newSetup(t *testing.T) setup {
	t.Helper()
	app, client := tcpPair(t)
	backend, server := tcpPair(t)
	return setup{app: app, client: client, backend: backend, server: server}
}

// testCtx bounds a handshake so a bug fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// copyBoth does what forward's copy loop does: io.Copy each way, CloseWrite
// the destination when a direction ends, close both when both are done. It
// returns after both copies have finished; t.Cleanup waits for it too.
func copyBoth(t *testing.T, client, backend net.Conn) (done <-chan struct{}) {
	t.Helper()
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
	}
	wg.Go(func() { one(backend, client) })
	wg.Go(func() { one(client, backend) })
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		client.Close()
		backend.Close()
		close(ch)
	}()
	t.Cleanup(func() {
		client.Close()
		backend.Close()
		<-ch
	})
	return ch
}

// readAllTimeout reads c to EOF, failing the test after 10s.
func readAllTimeout(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read: %v", err)
	}
	return b
}
