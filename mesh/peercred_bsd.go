//go:build darwin || freebsd

package mesh

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// xucredVersion is XUCRED_VERSION of <sys/ucred.h> (0 on darwin and
// FreeBSD); x/sys does not export it.
const xucredVersion = 0

// fdPeerUID reads LOCAL_PEERCRED of a connected Unix socket, darwin's and
// FreeBSD's SO_PEERCRED: a struct xucred with the effective uid of the
// peer when it connected. (Not run where this was written, a Linux host;
// `GOOS=darwin go vet` and `GOOS=freebsd go vet` compile it.)
func fdPeerUID(fd int) (uint32, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, fmt.Errorf("LOCAL_PEERCRED: %w", err)
	}
	if cred.Version != xucredVersion {
		return 0, fmt.Errorf("LOCAL_PEERCRED: struct xucred version %d, want %d", cred.Version, xucredVersion)
	}
	return cred.Uid, nil
}
