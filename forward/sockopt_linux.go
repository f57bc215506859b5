package forward

import (
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listenConfig sets keepalive, TCP_NODELAY and TCP_USER_TIMEOUT once on
// the listening socket: accepted sockets inherit the first two on Linux
// (and the third on recent kernels), so net's per-conn KeepAlive is off
// and the raw accept path (evaccept_linux.go) sets nothing more.
func (c *Config) listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAlive: -1, Control: c.controlListen}
}

func (c *Config) controlListen(network, addr string, rc syscall.RawConn) error {
	if err := c.control(network, addr, rc); err != nil {
		return err
	}
	if !isTCP(network) {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("forward: set TCP_NODELAY: %w", serr)
	}
	return nil
}

// dialer sets keepalive and TCP_USER_TIMEOUT in Control, before the
// socket connects, instead of net's per-conn KeepAlive.
func (c *Config) dialer() *net.Dialer {
	return &net.Dialer{KeepAlive: -1, Control: c.control}
}

// controlKeepAlive sets the keepalive options on a socket: SO_KEEPALIVE,
// and KeepAlive as the idle time and the probe interval, 9 probes.
func (c *Config) controlKeepAlive(network, _ string, rc syscall.RawConn) error {
	if c.KeepAlive < 0 || !isTCP(network) {
		return nil
	}
	secs := max(int(c.KeepAlive.Seconds()), 1)
	var serr error
	err := rc.Control(func(fd uintptr) {
		for _, o := range []struct{ level, opt, v int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
		} {
			if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("forward: set keepalive: %w", serr)
	}
	return nil
}

// control sets the keepalive options and TCP_USER_TIMEOUT on a socket
// before it connects. Accepted sockets do not inherit TCP_USER_TIMEOUT
// from the listener (checked on Linux), so acceptLoop sets it on each
// through setUserTimeout.
func (c *Config) control(network, addr string, rc syscall.RawConn) error {
	if err := c.controlKeepAlive(network, addr, rc); err != nil {
		return err
	}
	return c.controlUserTimeout(network, rc)
}

// setUserTimeoutFD sets TCP_USER_TIMEOUT: unacknowledged data for longer
// than d ends the connection, so a peer that vanished is noticed.
func setUserTimeoutFD(fd uintptr, d time.Duration) error {
	return unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
}
