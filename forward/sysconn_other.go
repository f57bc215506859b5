//go:build !linux

package forward

import "net"

// sysConnOf returns c: the raw reads and writes of sysConn
// (sysconn_linux.go) are Linux's.
func sysConnOf(c net.Conn) net.Conn { return c }

// tlsTruncated reports false: telling a FIN from a close_notify needs the
// socket reads of sysConn (sysconn_linux.go).
func tlsTruncated(net.Conn) bool { return false }
