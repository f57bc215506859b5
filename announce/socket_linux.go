//go:build linux

package announce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openSocket returns a UDP socket for mDNS on one interface:
//
//   - bound to 224.0.0.251:5353 (not the wildcard, as net.ListenMulticastUDP
//     does), so it receives only datagrams sent to the group; unicast
//     datagrams for port 5353 are not delivered to it (see
//     openUnicastSocket for where they go);
//   - SO_REUSEADDR, so avahi-daemon (and other Servers) can bind 5353 too,
//     before or after us;
//   - IP_MULTICAST_ALL off and the group joined on this interface only, so
//     the socket receives only what arrives on this interface;
//   - IP_MULTICAST_IF on this interface, so multicast leaves on it;
//   - IP_MULTICAST_LOOP on (net.ListenMulticastUDP turns it off), so an
//     avahi-daemon on the same host sees our announcements;
//   - IP_MULTICAST_TTL 255 and IP_TTL 255 (RFC 6762 §11), the latter for
//     the unicast replies it sends to legacy and QU queriers.
func openSocket(ifindex int) (conn *net.UDPConn, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	ints := []struct {
		level, opt, val int
		name            string
	}{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "SO_REUSEADDR"},
		{unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL"},
		{unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 1, "IP_MULTICAST_LOOP"},
		{unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 255, "IP_MULTICAST_TTL"},
		{unix.IPPROTO_IP, unix.IP_TTL, 255, "IP_TTL"},
	}
	for _, o := range ints {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			return nil, os.NewSyscallError("setsockopt "+o.name, err)
		}
	}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF,
		&unix.IPMreqn{Ifindex: int32(ifindex)}); err != nil {
		return nil, os.NewSyscallError("setsockopt IP_MULTICAST_IF", err)
	}
	group := mdnsGroup.Addr().As4()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: mdnsPort, Addr: group}); err != nil {
		return nil, os.NewSyscallError("bind "+mdnsGroup.String(), err)
	}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
		&unix.IPMreqn{Multiaddr: group, Ifindex: int32(ifindex)}); err != nil {
		return nil, os.NewSyscallError("setsockopt IP_ADD_MEMBERSHIP", err)
	}
	f := os.NewFile(uintptr(fd), "mdns")
	fd = -1 // f owns it now
	defer f.Close()
	pc, err := net.FilePacketConn(f) // dups the descriptor
	if err != nil {
		return nil, err
	}
	c, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("announce: socket is a %T, not UDP", pc)
	}
	return c, nil
}

// openUnicastSocket returns a UDP socket bound to addr:5353 with
// SO_REUSEADDR and IP_TTL 255 (RFC 6762 §11), for queries sent directly to
// this host (dig -p 5353 @addr).
//
// Coexistence with avahi-daemon: Linux delivers a unicast datagram to the
// one socket whose bound address matches it most specifically, and addr
// beats avahi-daemon's 0.0.0.0:5353. So every unicast datagram to
// addr:5353 (direct queries, and unicast responses to avahi's own QU
// queries alike) goes to this socket and not to avahi-daemon's while we
// run. Multicast is unaffected: both daemons receive every group datagram.
func openUnicastSocket(addr netip.Addr) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				serr = os.NewSyscallError("setsockopt SO_REUSEADDR", serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, 255); serr != nil {
				serr = os.NewSyscallError("setsockopt IP_TTL", serr)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(addr, mdnsPort).String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}
