//go:build !linux

package forward

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
)

// evLoops is empty off Linux: every stream is copied by goroutines
// (stream.go). The event loop is evloop_linux.go.
type evLoops struct{}

func (*evLoops) start(net.Conn, net.Conn, copyOpts, func(in, out int64, end endReason, err error)) bool {
	return false
}

func (*evLoops) abortAll() {}
func (*evLoops) stop()     {}

// rawAccept reports false: the raw accept path needs the event loop.
func (*Proxy) rawAccept(*routeState, *listener) bool { return false }

// finish is never called here: without rawAccept every firstDial is none.
func (f firstDial) finish(context.Context, *Config, string, *atomic.Uint64) (net.Conn, error) {
	return nil, errors.New("forward: no raw accept path on this system")
}
