package mesh

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fdPeerUID reads SO_PEERCRED of a connected Unix socket: the effective
// uid of the peer when it connected.
func fdPeerUID(fd int) (uint32, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	return cred.Uid, nil
}
