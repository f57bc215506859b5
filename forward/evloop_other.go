//go:build !linux

package forward

import "net"

// evLoops is empty off Linux: every stream is copied by goroutines
// (stream.go). The event loop is evloop_linux.go.
type evLoops struct{}

func (*evLoops) run(net.Conn, net.Conn, copyOpts) (in, out int64, end endReason, err error, ok bool) {
	return 0, 0, endClean, nil, false
}

func (*evLoops) abortAll() {}
func (*evLoops) stop()     {}
