//go:build unix && !linux

package forward

import "golang.org/x/sys/unix"

// rawReads: a plain TCP socket is read with read(2) inside RawConn.Read,
// so a buffer is taken only once the socket has bytes (rawReader).
const rawReads = true

// readNonblock reads fd once, retrying EINTR. again is true when the
// socket has nothing yet (EAGAIN): the caller waits for the poller.
func readNonblock(fd uintptr, b []byte) (n int, again bool, err error) {
	for {
		n, err = unix.Read(int(fd), b)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.EAGAIN {
		return 0, true, nil
	}
	return n, false, err
}
