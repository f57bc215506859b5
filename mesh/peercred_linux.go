package mesh

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// socketPeerUID is the effective uid of the process at the other end of a
// Unix socket connection, as the kernel recorded it at connect
// (SO_PEERCRED): the caller cannot choose what it says.
func socketPeerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("peer credentials: %T is not a Unix socket connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("peer credentials: SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, nil
}
