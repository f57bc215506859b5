//go:build !linux

package main

import (
	"errors"
	"net"
)

// socketReset reads TCP_INFO, which is Linux's; the lab runs only there.
func socketReset(*net.TCPConn) error {
	return errors.New("socketReset: reading a socket's TCP state needs Linux")
}
