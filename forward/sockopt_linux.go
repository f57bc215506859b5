package forward

import (
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeoutFD sets TCP_USER_TIMEOUT: unacknowledged data for longer
// than d ends the connection, so a peer that vanished is noticed.
func setUserTimeoutFD(fd uintptr, d time.Duration) error {
	return unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
}
