//go:build !linux

package gossip

import (
	"net"
	"net/netip"
)

// udpIO reads and writes the gossip UDP socket through net.UDPConn (see
// udpio_linux.go for why Linux does it otherwise).
type udpIO struct {
	c *net.UDPConn
}

func newUDPIO(c *net.UDPConn) (*udpIO, error) { return &udpIO{c: c}, nil }

func (u *udpIO) recv(b []byte) (int, netip.AddrPort, error) {
	n, from, err := u.c.ReadFromUDPAddrPort(b)
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}

func (u *udpIO) send(b []byte, to netip.AddrPort) error {
	_, err := u.c.WriteToUDPAddrPort(b, to)
	return err
}
