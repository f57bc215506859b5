package forward

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func userTimeout(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, errors.New("not a syscall.Conn")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		v, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		return 0, err
	}
	return v, serr
}

func TestSocketOptions(t *testing.T) {
	// Both the dialed backend conn and the accepted client conn carry
	// TCP_USER_TIMEOUT, so dead peers are noticed without wrapping conns.
	cfg := testConfig(t)
	cfg.UserTimeout = 12345 * time.Millisecond
	var (
		mu  sync.Mutex
		got []int
	)
	testHookCopy = func(dst, _ net.Conn) {
		v, err := userTimeout(dst)
		if err != nil {
			t.Errorf("getsockopt: %v", err)
		}
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
	}
	t.Cleanup(func() { testHookCopy = nil })
	addr := closedAddr(t)
	p, _ := newProxy(t, cfg)
	p.Update([]Route{{Service: "svc", Listen: addr, Backends: []Backend{{Addr: startBackend(t, echo)}}}})
	if out := roundTrip(t, addr, "x"); out != "x" {
		t.Fatalf("got %q, want %q", out, "x")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != 12345 || got[1] != 12345 {
		t.Errorf("TCP_USER_TIMEOUT: got %v ms, want [12345 12345]", got)
	}
}
