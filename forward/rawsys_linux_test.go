package forward

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawConnect opens a socket with sysSocket, connects it to addr with
// sysConnect and waits up to 5 s for the connect to finish; it returns
// the socket and the connect's result (SO_ERROR).
func rawConnect(t *testing.T, addr string) (int, error) {
	t.Helper()
	sa := sockaddrOf(addr)
	if sa == nil {
		t.Fatalf("sockaddrOf(%q) = nil", addr)
	}
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := sysSocket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatalf("sysSocket: %v", err)
	}
	t.Cleanup(func() { sysClose(fd) })
	if err := sysConnect(fd, sa); err != nil && err != unix.EINPROGRESS {
		return fd, err
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(pfd, 5000)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			t.Fatalf("poll for connect to %s: n=%d err=%v", addr, n, err)
		}
		break
	}
	return fd, sysSoError(fd)
}

// TestRawSyscalls checks the raw system calls of the loop's hot path
// against the kernel: the connect reaches the right address and port
// (IPv4 and IPv6), options read back, a refused connect shows in
// SO_ERROR, shutdown is a clean end and a zero linger close a reset.
func TestRawSyscalls(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1:0"
			if network == "tcp6" {
				host = "[::1]:0"
			}
			ln, err := net.Listen(network, host)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			addr := ln.Addr().String()
			accept := func() *net.TCPConn {
				t.Helper()
				_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
				c, err := ln.Accept()
				if err != nil {
					t.Fatalf("accept: %v", err)
				}
				t.Cleanup(func() { c.Close() })
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				return c.(*net.TCPConn)
			}

			// Connect, send, and end cleanly with a shutdown.
			fd, err := rawConnect(t, addr)
			if err != nil {
				t.Fatalf("connect to %s: %v", addr, err)
			}
			peer := accept()
			if got, want := peer.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(), netip.MustParseAddrPort(addr).Addr(); got != want {
				t.Errorf("peer address %v, want %v", got, want)
			}
			for _, v := range []int{1, 0} {
				if err := sysSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, v); err != nil {
					t.Fatalf("set TCP_NODELAY %d: %v", v, err)
				}
				got, err := sysGetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
				if err != nil || (got != 0) != (v != 0) {
					t.Errorf("TCP_NODELAY after setting %d: %d, %v", v, got, err)
				}
			}
			if err := sysSetsockoptInt(fd, unix.IPPROTO_TCP, -1, 1); !errors.Is(err, unix.ENOPROTOOPT) {
				t.Errorf("setsockopt of no option: %v, want ENOPROTOOPT", err)
			}
			if _, err := writeFD(fd, []byte("hi")); err != nil {
				t.Fatalf("write: %v", err)
			}
			sysShutdown(fd, unix.SHUT_WR)
			if b, err := io.ReadAll(peer); string(b) != "hi" || err != nil {
				t.Errorf("peer read %q, %v; want \"hi\" and a clean end", b, err)
			}

			// A zero linger close is a reset, never a clean end.
			fd, err = rawConnect(t, addr)
			if err != nil {
				t.Fatalf("connect to %s: %v", addr, err)
			}
			peer = accept()
			sysLingerZero(fd)
			sysClose(fd)
			if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("peer read after the reset: %v, want ECONNRESET", err)
			}

			// A refused connect shows in SO_ERROR.
			ln2, err := net.Listen(network, host)
			if err != nil {
				t.Fatal(err)
			}
			closed := ln2.Addr().String()
			ln2.Close()
			if _, err := rawConnect(t, closed); !errors.Is(err, unix.ECONNREFUSED) {
				t.Errorf("connect to closed %s: %v, want ECONNREFUSED", closed, err)
			}
		})
	}
}

func TestSysEpollCtl(t *testing.T) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	ev := &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	for _, c := range []struct {
		name string
		op   int
		want error
	}{
		{"add", unix.EPOLL_CTL_ADD, nil},
		{"add again", unix.EPOLL_CTL_ADD, unix.EEXIST},
		{"delete", unix.EPOLL_CTL_DEL, nil},
		{"delete again", unix.EPOLL_CTL_DEL, unix.ENOENT},
	} {
		if err := sysEpollCtl(epfd, c.op, efd, ev); err != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
