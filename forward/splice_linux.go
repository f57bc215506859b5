package forward

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Bulk transfers between two plain TCP sockets move through a pipe with
// splice(2), so their bytes are never copied into user space. A pipe is
// borrowed from a small pool only once the source socket has bytes and
// given back as soon as they have all reached the destination: an idle
// connection holds none (io.Copy's splice held two 1 MiB pipes per
// connection for its whole life). A direction switches to splice after a
// read fills a whole copy buffer, a sign of bulk data, and back to the
// buffer once a splice moves less than spliceMin.

// Pipes stay at 256 KiB: 1 MiB pipes cut the forwarder's CPU per byte by
// a few per cent under one iperf3 stream, but with four streams the
// receiving iperf3 spent 79-84 % of a core instead of 51-58 % and the
// throughput fell by about 8 % (session 6, docs/benchmarks.md).
const (
	pipeSize     = 256 << 10 // F_SETPIPE_SZ: bytes one splice pair can move
	spliceMin    = 16 << 10  // a splice moving less than this ends bulk mode
	maxIdlePipes = 64        // pipes kept for reuse; more are closed on return
)

// errNoPipe means no pipe could be made (EMFILE, the user's pipe quota):
// the direction goes on through its buffer.
var errNoPipe = errors.New("forward: no pipe for splice")

type pipe struct{ r, w, size int }

var pipes struct {
	mu   sync.Mutex
	free []*pipe // guarded by mu; empty pipes

	out atomic.Int64 // pipes borrowed now: bytes in flight; 0 when every connection is idle
}

func getPipe() (*pipe, error) {
	pipes.mu.Lock()
	if n := len(pipes.free); n > 0 {
		p := pipes.free[n-1]
		pipes.free = pipes.free[:n-1]
		pipes.mu.Unlock()
		pipes.out.Add(1)
		return p, nil
	}
	pipes.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, errNoPipe
	}
	p := &pipe{r: fds[0], w: fds[1], size: pipeSize}
	if n, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize); err == nil {
		p.size = n
	} else if n, err := unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0); err == nil {
		p.size = n // over the pipe quota: the default size still works
	} else {
		_ = unix.Close(p.r)
		_ = unix.Close(p.w)
		return nil, errNoPipe
	}
	pipes.out.Add(1)
	return p, nil
}

// putPipe returns an empty pipe to the pool.
func putPipe(p *pipe) {
	pipes.out.Add(-1)
	pipes.mu.Lock()
	if len(pipes.free) < maxIdlePipes {
		pipes.free = append(pipes.free, p)
		p = nil
	}
	pipes.mu.Unlock()
	if p != nil {
		_ = unix.Close(p.r)
		_ = unix.Close(p.w)
	}
}

// discard closes a borrowed pipe that may still hold bytes.
func (p *pipe) discard() {
	pipes.out.Add(-1)
	_ = unix.Close(p.r)
	_ = unix.Close(p.w)
}

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// spliceChunk moves what src has now (up to a pipe's size) to dst through
// a pooled pipe. It returns the bytes moved, a read error (io.EOF at the
// end of src, errNoPipe, a deadline) or a write error. src and dst are
// the sockets' RawConns, so Go's poller does the waiting.
func spliceChunk(src, dst syscall.RawConn) (n int, rerr, werr error) {
	var (
		p    *pipe
		serr error
	)
	err := src.Read(func(fd uintptr) bool {
		if p == nil {
			if p, serr = getPipe(); serr != nil {
				return true
			}
		}
		var m int64
		for {
			m, serr = splice(int(fd), p.w, p.size, spliceFlags)
			if serr != unix.EINTR {
				break
			}
		}
		if serr == unix.EAGAIN {
			putPipe(p) // still empty
			p = nil
			return false // wait until readable, holding no pipe
		}
		n = int(m)
		return true
	})
	switch {
	case err != nil || serr != nil || n == 0:
		if p != nil {
			putPipe(p) // nothing went in
		}
		switch {
		case err != nil:
			return 0, err, nil
		case serr == errNoPipe:
			return 0, serr, nil
		case serr != nil:
			return 0, os.NewSyscallError("splice", serr), nil
		}
		return 0, io.EOF, nil
	}
	left := n
	err = dst.Write(func(fd uintptr) bool {
		for left > 0 {
			m, e := splice(p.r, int(fd), left, spliceFlags)
			switch e {
			case nil:
				left -= int(m)
			case unix.EINTR:
			case unix.EAGAIN:
				return false // wait until writable
			default:
				serr = e
				return true
			}
		}
		return true
	})
	if err == nil && serr != nil {
		err = os.NewSyscallError("splice", serr)
	}
	if err != nil {
		p.discard() // bytes may be left in it
		return n - left, nil, err
	}
	putPipe(p)
	return n, nil, nil
}

// splice moves up to n bytes between rfd and wfd with no offsets and
// returns the count as int64 on every architecture. Every caller passes
// non-blocking descriptors (O_NONBLOCK sockets, SPLICE_F_NONBLOCK on the
// pipe), so the call cannot block and is made raw, as readFD and writeFD
// are: through unix.Splice (syscall.Syscall6) each call entered the
// runtime's syscall state, whose first entry wakes sysmon, which then
// polled every 20 µs while splices kept coming; under one iperf3 stream
// sysmon and entersyscall were 10 % of the forwarder's samples, with a
// nanosleep for about every three splices.
func splice(rfd, wfd, n int, flags int) (int64, error) {
	m, _, errno := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(rfd), 0, uintptr(wfd), 0, uintptr(n), uintptr(flags))
	if errno != 0 {
		return 0, errno
	}
	return int64(m), nil
}
