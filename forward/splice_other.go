//go:build !linux

package forward

import (
	"errors"
	"sync/atomic"
	"syscall"
)

// splice(2) and pipe sizes are Linux's. Elsewhere spliceChunk makes no
// pipe, so the first bulk chunk of a direction reports errNoPipe and the
// stream goes on through its buffer (see stream.copy), moving nothing.

const spliceMin = 16 << 10 // as on Linux; never reached here

// errNoPipe means no pipe could be made: always, on this system.
var errNoPipe = errors.New("forward: no pipe for splice: splice(2) needs Linux")

// pipes mirrors the Linux pool's gauge; no pipe is ever borrowed here.
var pipes struct {
	out atomic.Int64
}

// spliceChunk moves nothing and reports errNoPipe as a read error, as
// the Linux one does when it cannot make a pipe.
func spliceChunk(_, _ syscall.RawConn) (n int, rerr, werr error) {
	return 0, errNoPipe, nil
}
