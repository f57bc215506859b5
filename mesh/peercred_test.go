//go:build linux || darwin || freebsd

package mesh

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestSocketPeerUID reads the real peer credentials (SO_PEERCRED on
// Linux, LOCAL_PEERCRED on darwin and FreeBSD) of a connection this
// process makes to itself: the uid must be ours.
func TestSocketPeerUID(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer s.Close()
	uid, err := socketPeerUID(s)
	if err != nil || uid != uint32(os.Geteuid()) {
		t.Fatalf("got uid %d, %v; want %d", uid, err, os.Geteuid())
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tc, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := socketPeerUID(tc); err == nil {
		t.Fatal("a TCP connection got a uid, want an error")
	}
}
