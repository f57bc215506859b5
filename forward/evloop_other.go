//go:build !linux

package forward

import "net"

// evLoops is empty off Linux: every stream is copied by goroutines
// (stream.go). The event loop is evloop_linux.go.
type evLoops struct{}

func (*evLoops) start(net.Conn, net.Conn, copyOpts, func(in, out int64, end endReason, err error)) bool {
	return false
}

func (*evLoops) abortAll() {}
func (*evLoops) stop()     {}
