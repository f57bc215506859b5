//go:build !linux

package mesh

import (
	"errors"
	"net"
)

// socketPeerUID would read the caller's uid, but SO_PEERCRED is Linux's;
// elsewhere the control socket cannot tell who calls, so it refuses every
// change (the read-only documents still answer).
func socketPeerUID(net.Conn) (uint32, error) {
	return 0, errors.New("peer credentials are read on Linux only (SO_PEERCRED)")
}
