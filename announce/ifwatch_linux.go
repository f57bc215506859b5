//go:build linux

package announce

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ifaceWatch tells when the machine's links or IPv4 addresses change: a
// netlink socket subscribed to those groups, read through Go's poller, so
// it costs nothing while nothing changes. Listing the interfaces instead
// every RescanInterval (three netlink dumps and their parsing on a host
// with two interfaces, one more per interface) was a twentieth of an idle
// node's CPU in a profile of a 100-host lab.
type ifaceWatch struct {
	f *os.File
	c chan struct{} // 1-buffered; a pending signal is enough
}

func newIfaceWatch() (*ifaceWatch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("announce: watch interfaces: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("announce: watch interfaces: bind netlink: %w", err)
	}
	// Non-blocking, so os.File reads through the poller and Close ends a
	// read in progress.
	return &ifaceWatch{f: os.NewFile(uintptr(fd), "netlink-route"), c: make(chan struct{}, 1)}, nil
}

// changes receives a value after links or addresses changed.
func (w *ifaceWatch) changes() <-chan struct{} { return w.c }

// run reads notifications until close. Their content does not matter:
// any of them means "list the interfaces again". A full socket buffer
// (ENOBUFS: notifications were lost) means the same.
func (w *ifaceWatch) run() {
	buf := make([]byte, 16<<10)
	for {
		_, err := w.f.Read(buf)
		if err != nil && !isNoBufs(err) {
			return // closed
		}
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
}

func (w *ifaceWatch) close() { _ = w.f.Close() }

func isNoBufs(err error) bool { return errors.Is(err, unix.ENOBUFS) }
