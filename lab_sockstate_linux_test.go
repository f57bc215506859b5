package main

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketReset reports a reset received on c in CLOSE_WAIT as
// ECONNRESET, another socket error as itself, and nil while c is open.
func socketReset(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var state uint8
	var soErr int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		if info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); serr == nil {
			state = info.State
			soErr, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		}
	}); err != nil {
		return err
	}
	switch {
	case serr != nil:
		return serr
	case state != unix.BPF_TCP_CLOSE:
		return nil
	case soErr == int(syscall.EPIPE) || soErr == int(syscall.ECONNRESET):
		return syscall.ECONNRESET
	case soErr != 0:
		return syscall.Errno(soErr)
	}
	return errors.New("closed without a reset")
}
