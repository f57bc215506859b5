//go:build !linux

package forward

import "net"

// sysConnOf returns c: the raw reads and writes of sysConn
// (sysconn_linux.go) are Linux's.
func sysConnOf(c net.Conn) net.Conn { return c }
