//go:build linux || darwin || freebsd

package mesh

import (
	"fmt"
	"net"
)

// socketPeerUID is the effective uid of the process at the other end of a
// Unix socket connection, as the kernel recorded it at connect (fdPeerUID:
// SO_PEERCRED on Linux, LOCAL_PEERCRED on darwin and FreeBSD): the caller
// cannot choose what it says. What the uid may do is callerAllowed's
// decision, the same on every system.
func socketPeerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("peer credentials: %T is not a Unix socket connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	var uid uint32
	var cerr error
	if err := raw.Control(func(fd uintptr) { uid, cerr = fdPeerUID(int(fd)) }); err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("peer credentials: %w", cerr)
	}
	return uid, nil
}
