//go:build linux

package gossip

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpIO reads and writes the gossip UDP socket with raw system calls
// instead of net.UDPConn's. What an idle node does most is read and send
// a probe, an ack or a gossip packet a few times a second, and each
// system call made the usual way (entersyscall) wakes Go's sysmon thread
// from its deep sleep when the process was otherwise idle; sysmon then
// polls every 20 µs for as long as the process runs. An strace of an idle
// node of a 25-host lab: 46 nanosleeps (sysmon) a second against a few
// packets. The socket is non-blocking, so these calls never block and may
// be raw (as the data plane's splice, read and write are); waiting for a
// packet or for room still goes through Go's poller (RawConn).
type udpIO struct {
	rc syscall.RawConn
	v6 bool // the socket is AF_INET6 (dual-stack when bound to the unspecified address)
}

func newUDPIO(c *net.UDPConn) (*udpIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("gossip: transport: udp socket: %w", err)
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) { domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); err != nil {
		return nil, fmt.Errorf("gossip: transport: udp socket: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("gossip: transport: udp socket domain: %w", serr)
	}
	return &udpIO{rc: rc, v6: domain == unix.AF_INET6}, nil
}

// recv reads one datagram into b, waiting for one in Go's poller. Only
// readLoop calls it.
func (u *udpIO) recv(b []byte) (int, netip.AddrPort, error) {
	var n int
	var from netip.AddrPort
	var rerr error
	err := u.rc.Read(func(fd uintptr) bool {
		var rsa unix.RawSockaddrAny
		l := uint32(unix.SizeofSockaddrAny)
		for {
			r, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
				unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
			switch errno {
			case 0:
				n, from, rerr = int(r), sockaddrAddrPort(&rsa), nil
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the poller
			default:
				rerr = errno
				return true
			}
		}
	})
	if err != nil {
		return 0, netip.AddrPort{}, err // closed
	}
	return n, from, rerr
}

// send writes b as one datagram to to, waiting in Go's poller while the
// socket buffer is full. Safe for concurrent use (memberlist sends from
// several goroutines); the kernel keeps datagrams whole.
func (u *udpIO) send(b []byte, to netip.AddrPort) error {
	rsa, size, err := u.sockaddr(to)
	if err != nil {
		return err
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	var serr error
	err = u.rc.Write(func(fd uintptr) bool {
		for {
			_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(b)),
				unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, uintptr(unsafe.Pointer(&rsa)), size)
			switch errno {
			case 0:
				serr = nil
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			default:
				serr = &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(to), Err: errno}
				return true
			}
		}
	})
	if err != nil {
		return &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(to), Err: err}
	}
	return serr
}

// sockaddr is to as the kernel takes it on this socket. A zone (a
// link-local peer, fe80::1%eth0) becomes the scope id, as net.UDPConn
// does: without it the kernel routes the packet by its table alone, out
// of whichever interface holds fe80::/64 first.
func (u *udpIO) sockaddr(to netip.AddrPort) (unix.RawSockaddrInet6, uintptr, error) {
	var rsa unix.RawSockaddrInet6
	a := to.Addr()
	switch {
	case !u.v6 && (a.Is4() || a.Is4In6()):
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		sa4.Family = unix.AF_INET
		sa4.Addr = a.Unmap().As4()
		putPort(&sa4.Port, to.Port())
		return rsa, unix.SizeofSockaddrInet4, nil
	case u.v6:
		// A dual-stack socket sends to IPv4 peers at ::ffff:a.b.c.d.
		rsa.Family = unix.AF_INET6
		rsa.Addr = a.As16()
		putPort(&rsa.Port, to.Port())
		if z := a.Zone(); z != "" {
			idx, err := zones.index(z)
			if err != nil {
				return rsa, 0, fmt.Errorf("gossip: transport: send to %s: %w", to, err)
			}
			rsa.Scope_id = uint32(idx)
		}
		return rsa, unix.SizeofSockaddrInet6, nil
	}
	return rsa, 0, fmt.Errorf("gossip: transport: send to %s: an IPv6 peer on an IPv4 socket", to)
}

// sockaddrAddrPort is the address in a sockaddr the kernel filled in,
// IPv4 peers of a dual-stack socket unmapped, a link-local peer with its
// zone (the interface it came in on), so that an answer goes back out of
// the same one.
func sockaddrAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), getPort(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() {
			a = a.WithZone(zones.name(int(sa.Scope_id)))
		}
		return netip.AddrPortFrom(a, getPort(sa.Port))
	}
	return netip.AddrPort{}
}

// getPort and putPort convert a port to and from network byte order, as
// sockaddrs hold it.
func getPort(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func putPort(dst *uint16, p uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(p>>8), byte(p)
}
