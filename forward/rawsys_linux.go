//go:build linux

package forward

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of a stream's life on the raw path (socket, options,
// connect, epoll_ctl, SO_ERROR, shutdown, close; the loop's eventfd goes
// through readFD and writeFD), made raw as readFD, writeFD and splice
// are: none of them can block here (every descriptor is non-blocking, and
// a socket lingers on close only with a time of 0, which resets at once).
//
// Why: x/sys's wrappers tell the runtime that a call may block
// (entersyscall), about ten times per connection. When both Ps have gone
// idle, sysmon sleeps, and the next entersyscall wakes it (a futex wake
// and a thread switch); awake, it polls every 20 µs again and retakes the
// P of a call it finds in the kernel over a tick (another switch). Under
// redis-benchmark -k 0 -c 50 (20,000 connections) that was 16,000-21,000
// sysmon sleeps and 43,000-52,000 thread switches in the forwarder; raw,
// 1,100-1,300 and 12,000-16,000 (HAProxy: 16,000-20,000). See
// docs/benchmarks.md, session 7.

// sysClose closes fd. EINTR is not retried: Linux has released fd by then.
func sysClose(fd int) {
	_, _, _ = unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// sysShutdown shuts down fd for how (unix.SHUT_WR, ...).
func sysShutdown(fd, how int) {
	_, _, _ = unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
}

func sysSetsockoptInt(fd, level, opt, v int) error {
	iv := int32(v)
	_, _, errno := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&iv)), 4, 0)
	return errnoErr(errno)
}

func sysGetsockoptInt(fd, level, opt int) (int, error) {
	var v int32
	l := uint32(4)
	_, _, errno := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	return int(v), errnoErr(errno)
}

// testHookSoError, when set by a test before any Proxy starts, is called
// on every SO_ERROR read. Never set outside tests.
var testHookSoError func()

// sysSoError returns fd's pending socket error (SO_ERROR), nil when none.
func sysSoError(fd int) error {
	if h := testHookSoError; h != nil {
		h()
	}
	serr, err := sysGetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && serr != 0 {
		err = unix.Errno(serr)
	}
	return err
}

// sysLingerZero sets SO_LINGER to on, 0 s: the close that follows resets.
func sysLingerZero(fd int) {
	lg := unix.Linger{Onoff: 1, Linger: 0}
	_, _, _ = unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER,
		uintptr(unsafe.Pointer(&lg)), unsafe.Sizeof(lg), 0)
}

func sysEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(ev)), 0, 0)
	return errnoErr(errno)
}

// sysSocket opens a socket; typ should include SOCK_NONBLOCK.
func sysSocket(family, typ int) (int, error) {
	fd, _, errno := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), uintptr(typ), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// sysConnect starts the connect of the non-blocking socket fd to sa, an
// IPv4 or IPv6 address (EINPROGRESS: under way); EINTR is retried.
func sysConnect(fd int, sa unix.Sockaddr) error {
	var (
		p  unsafe.Pointer
		n  uintptr
		a4 unix.RawSockaddrInet4
		a6 unix.RawSockaddrInet6
	)
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		a4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: portOf(uint16(sa.Port)), Addr: sa.Addr}
		p, n = unsafe.Pointer(&a4), unix.SizeofSockaddrInet4
	case *unix.SockaddrInet6:
		a6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: portOf(uint16(sa.Port)), Addr: sa.Addr, Scope_id: sa.ZoneId}
		p, n = unsafe.Pointer(&a6), unix.SizeofSockaddrInet6
	default:
		return unix.EAFNOSUPPORT
	}
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(p), n)
		if errno != unix.EINTR {
			return errnoErr(errno)
		}
	}
}

// errnoErr returns errno as an error, nil for 0.
func errnoErr(errno unix.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}
