//go:build linux

package forward

import "golang.org/x/sys/unix"

// rawReads: a plain TCP socket is read with read(2) inside RawConn.Read,
// so a buffer is taken only once the socket has bytes (rawReader).
const rawReads = true

// readNonblock reads fd once, retrying EINTR. again is true when the
// socket has nothing yet (EAGAIN): the caller waits for the poller. A raw
// system call, as the event loop's readFD: the socket is non-blocking
// (see sysConn).
func readNonblock(fd uintptr, b []byte) (n int, again bool, err error) {
	n, err = readFD(int(fd), b)
	if err == unix.EAGAIN {
		return 0, true, nil
	}
	return n, false, err
}
