//go:build linux

package forward

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Keyed streams in the event loop (issue 9, session 12).
//
// A stream with TLS on one side (a keyed hop: the Proxy's backend, the
// Server's client) runs in an event loop like a plain one, instead of a
// goroutine per direction. The tls.Conn stays crypto/tls's: the loop
// turns its socket, a sysConn, into one that never waits (loopSock). A
// read with nothing in the socket fails with errLoopAgain, a timeout, so
// crypto/tls keeps what it has of a record and returns, as after a read
// deadline, and the loop waits for the next edge; a write the socket does
// not take in full keeps the rest in the direction's pending buffer, as
// the plain path does, and the loop reads no more for that direction
// until EPOLLOUT flushed it. Everything else is the plain stream's life:
// the same edges, the same pending buffers, timeouts, resets (SO_LINGER 0
// on the socket under TLS, no close_notify) and half-close, which over
// TLS is a close_notify, as the goroutine copy's CloseWrite.
//
// What the loop gains over two goroutines is what it gains for plain
// streams: one wake-up handles every ready socket, and a short read says
// the socket is empty, so no read ends in EAGAIN.

// errLoopAgain is what a socket driven by a loop returns when it has
// nothing to read now. It is a timeout, which crypto/tls treats as
// temporary (as a read deadline): the record read so far stays buffered.
var errLoopAgain error = loopAgain{}

type loopAgain struct{}

func (loopAgain) Error() string   { return "forward: no bytes in the socket now" }
func (loopAgain) Timeout() bool   { return true }
func (loopAgain) Temporary() bool { return true }

// loopSock is a sysConn's state once an event loop drives the tls.Conn
// over it. Only the loop's goroutine uses it.
type loopSock struct {
	fd  int   // the loop's copy of the socket
	src *edir // the direction this socket is the source of: its edge state
	dst *edir // the direction it is the destination of: its pending bytes
}

// read reads the socket once, unless the last read emptied it: a short
// read leaves nothing behind but maybe a FIN (rdhup), which the next read
// must then see.
func (s *loopSock) read(b []byte) (int, error) {
	if !s.src.readable {
		return 0, errLoopAgain
	}
	n, err := readFD(s.fd, b)
	switch {
	case err == unix.EAGAIN:
		s.src.readable = false
		return 0, errLoopAgain
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, io.EOF
	}
	if n < len(b) && !s.src.rdhup {
		s.src.readable = false
	}
	return n, nil
}

// write writes b, or keeps what the socket does not take (and everything
// while bytes wait already) in dst's pending buffer; it fails only when
// the socket does.
func (s *loopSock) write(b []byte) (int, error) {
	w := 0
	if !s.dst.pending() {
		var err error
		if w, err = writeFD(s.fd, b); err != nil && err != unix.EAGAIN {
			return w, os.NewSyscallError("write", err)
		}
	}
	s.dst.keep(b[w:])
	return len(b), nil
}

// loopSocket returns the socket an event loop can run c on and, when c is
// TLS, the tls.Conn: c itself when it is plain TCP and raw (when set) is
// c; the socket under c when c is a *tls.Conn, handshake done, over a
// sysConn that raw (when set) is or wraps. Anything else (a
// Route.Handshake wrapper) stays on goroutines.
func loopSocket(c, raw net.Conn) (*net.TCPConn, *tls.Conn, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		return c, nil, raw == nil || raw == c
	case *tls.Conn:
		sc, ok := c.NetConn().(*sysConn)
		if !ok || sc.loop != nil {
			return nil, nil, false
		}
		return sc.TCPConn, c, raw == nil || raw == net.Conn(sc) || raw == net.Conn(sc.TCPConn)
	}
	return nil, nil, false
}

// driveTLS makes side's TLS conn tc the loop's: from now on its socket
// reads and writes e.fd[side] without waiting. What TLS read before the
// loop took over, no edge announces: add has the loop pump the stream
// once (evLoop.fresh).
func (e *econn) driveTLS(side int, tc *tls.Conn) {
	sc := tc.NetConn().(*sysConn)
	sc.loop = &loopSock{fd: e.fd[side], src: &e.dir[side], dst: &e.dir[1-side]}
	e.tls[side] = tc
	e.dir[0].noSplice, e.dir[1].noSplice = true, true // no splice through TLS
}

// mayRead reports whether direction d's source may have bytes without a
// new edge: its socket may, or TLS may hold records read already.
func (e *econn) mayRead(d int) bool { return e.dir[d].readable || e.tls[d] != nil }

// pumpTLS is pump for a stream with TLS on a side: it moves direction
// d's bytes, decrypting from a TLS source and encrypting to a TLS
// destination, until the source has nothing now, the destination is
// full, or the source ends.
func (l *evLoop) pumpTLS(e *econn, d int) {
	dir := &e.dir[d]
	src, dst := e.tls[d], e.tls[1-d]
	for range maxChunks {
		var (
			n    int
			rerr error
		)
		if src != nil {
			n, rerr = src.Read(l.buf) // one record at most
		} else {
			var next srcNext
			n, next, rerr = l.readStep(e, d)
			switch {
			case rerr != nil:
			case next == srcEnded:
				rerr = io.EOF
			case next == srcEmpty:
				rerr = errLoopAgain
			}
		}
		if n > 0 {
			if dst != nil {
				if _, err := dst.Write(l.buf[:n]); err != nil {
					l.abortStream(e, endError, err)
					return
				}
				l.account(e, d, n)
			} else if !l.writeStep(e, d, n) {
				return
			}
		}
		switch {
		case rerr == io.EOF && src != nil && tlsTruncated(src):
			l.abortStream(e, endError, errTruncated)
			return
		case rerr == io.EOF:
			l.endDirection(e, d)
			return
		case errors.Is(rerr, errLoopAgain):
			return
		case rerr != nil:
			l.abortStream(e, endError, rerr)
			return
		case dir.pending():
			return // the destination is full: EPOLLOUT resumes (flush)
		}
	}
	l.again = append(l.again, e)
}
