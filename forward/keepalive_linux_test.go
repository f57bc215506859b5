package forward

import (
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKeepAlive reads the options back with getsockopt: TCP_KEEPIDLE is
// Linux's.
func TestKeepAlive(t *testing.T) {
	cfg := testConfig(t)
	cfg.KeepAlive = 7 * time.Second
	var (
		mu   sync.Mutex
		idle []int
	)
	testHookCopy = func(dst, _ net.Conn) {
		rc, err := dst.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Error(err)
			return
		}
		rc.Control(func(fd uintptr) {
			on, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			v, _ := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
			mu.Lock()
			idle = append(idle, on*v)
			mu.Unlock()
		})
	}
	t.Cleanup(func() { testHookCopy = nil })
	addr := closedAddr(t)
	p, _ := newProxy(t, cfg)
	p.Update([]Route{{Service: "svc", Listen: addr, Backends: []Backend{{Addr: startBackend(t, echo)}}}})
	if got := roundTrip(t, addr, "x"); got != "x" {
		t.Fatalf("got %q, want %q", got, "x")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(idle) != 2 || idle[0] != 7 || idle[1] != 7 {
		t.Errorf("keepalive idle on backend and client conns: got %v s, want [7 7]", idle)
	}
}
