//go:build !linux

package announce

import (
	"errors"
	"net"
	"net/netip"
)

// openSocket is only implemented for Linux.
func openSocket(ifindex int) (*net.UDPConn, error) {
	return nil, errors.ErrUnsupported
}

// openUnicastSocket is only implemented for Linux.
func openUnicastSocket(addr netip.Addr) (*net.UDPConn, error) {
	return nil, errors.ErrUnsupported
}
