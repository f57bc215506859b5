//go:build unix

package forward

import "golang.org/x/sys/unix"

// socketError returns the socket's pending error (SO_ERROR), which reading
// clears, or nil.
func socketError(fd uintptr) error {
	n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if n != 0 {
		return unix.Errno(n)
	}
	return nil
}
