// Package sdnotify tells systemd about the service's state (sd_notify(3)):
// one datagram to the Unix socket named by $NOTIFY_SOCKET. No dependency,
// and nothing happens when the variable is unset (not run by systemd, or
// not Type=notify).
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// States the service manager understands (sd_notify(3)).
const (
	Ready    = "READY=1"    // startup finished: systemd starts the units ordered after us
	Stopping = "STOPPING=1" // shutdown began: systemd shows "deactivating"
)

// Notify sends state ("READY=1", or several NAME=VALUE lines) to the socket
// in $NOTIFY_SOCKET. It reports whether it sent anything: false with a nil
// error when the variable is unset. A name starting with '@' is an
// abstract socket, which Go's net package maps itself. Safe for concurrent
// use; it does not block for long (a datagram to a local socket).
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sdnotify: send %q: %w", state, err)
	}
	return true, nil
}
