package forward

import (
	"cmp"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A stream is the copy phase of one connection: two directions, each in
// its own goroutine, and how the connection ended.
//
// How a connection ends on one side is passed on to the other:
//   - a clean end (EOF: a FIN, or a TLS close_notify) half-closes the other
//     side for writing (FIN / close_notify), and the other direction keeps
//     running, as half-closing protocols need;
//   - a read or write error (a reset, a broken TLS record) aborts the
//     stream: both sides are reset (SO_LINGER 0, then close, sends an RST),
//     so a cut stream never looks like a clean end to either peer. Over a
//     keyed hop the TLS conn is aborted under TLS, without close_notify, so
//     the peer ambassador reads a reset and resets its own side in turn;
//   - so does a reset of a side that had already half-closed (awaitOther):
//     the other side read its FIN, and must not keep that as a clean end;
//   - IdleTimeout and HalfCloseTimeout also abort (reset) the stream.
//
// Plain TCP sources are read straight from the socket through
// syscall.RawConn, and a buffer is taken from a pool only once bytes have
// arrived, and given back after they are written: an idle connection holds
// no buffer and no splice pipe. Bulk data between two plain sockets is
// spliced through a pooled pipe, borrowed the same way (splice.go).
// Wrapped conns (TLS, a Route.Handshake wrapper) are read through their
// Read with a pooled buffer.
type stream struct {
	client, backend net.Conn
	// rawClient and rawBackend are the sockets under client and backend
	// (the same conns when not wrapped), which abort resets.
	rawClient, rawBackend net.Conn
	stats                 *streamStats // the route's or Server's counters
	cs                    *connState   // live per-connection counts; nil on a Server
	idle, halfClose       time.Duration

	lastActive   atomic.Int64 // UnixNano of the last write either way
	closedBoth   atomic.Bool  // endDirection closed a conn without CloseWrite both ways
	halfClosedAt atomic.Int64 // UnixNano when one direction ended cleanly; 0 = not yet
	end          atomic.Int32 // endReason; the first reason to end the stream wins
	err          error        // the error behind endStreamError; written once, by the winner of end
	// ended[0] is closed when the client → backend copy returns, ended[1]
	// when the other does; watch runs until they are.
	ended [2]chan struct{}
}

// endReason says how a stream ended.
type endReason int32

const (
	endClean     endReason = iota // both directions reached EOF
	endError                      // a read or write error: both sides reset
	endIdle                       // IdleTimeout: both sides reset
	endHalfClose                  // HalfCloseTimeout: both sides reset
	endClosed                     // closed under us (Shutdown's force-close)
)

func (e endReason) String() string {
	switch e {
	case endClean:
		return "clean"
	case endError:
		return "stream error"
	case endIdle:
		return "idle timeout"
	case endHalfClose:
		return "half-close timeout"
	case endClosed:
		return "closed"
	}
	return "unknown"
}

// testHookCopy, when set by a test before any Proxy or Server starts, is
// called with both ends of every copy direction; testHookRead with whether
// that direction reads the raw socket (the fast path for plain TCP). Never
// set outside tests.
var (
	testHookCopy   func(dst, src net.Conn)
	testHookRead   func(raw bool)
	testHookSplice func(n int) // bytes moved by one splice pair
)

// copyBufSize is the size of a pooled copy buffer: large enough that bulk
// transfers move in few syscalls, and held only while bytes are in flight.
const copyBufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// wrappedBufSize is the buffer for reading a wrapped conn (TLS): its Read
// blocks holding the buffer, and returns at most one TLS record's
// plaintext (16 KiB) per call anyway.
const wrappedBufSize = 16 << 10

var wrappedBufPool = sync.Pool{New: func() any { b := make([]byte, wrappedBufSize); return &b }}

// copyOpts are what proxyCopy needs besides the two conns.
type copyOpts struct {
	cfg   *Config
	stats *streamStats // the route's or Server's counters
	cs    *connState   // nil on a Server
	// rawClient and rawBackend are the sockets under the conns when a
	// Route.Handshake wrapped them; nil = the conns themselves (or, for a
	// *tls.Conn, its NetConn).
	rawClient, rawBackend net.Conn
}

// proxyCopy runs the stream between client and backend until both
// directions end or it is aborted, then closes (or resets) both conns. It
// returns the bytes copied client → backend (in) and backend → client
// (out), how the stream ended and, for endError, the error.
func proxyCopy(client, backend net.Conn, o copyOpts) (in, out int64, end endReason, err error) {
	s := &stream{client: client, backend: backend, stats: o.stats, cs: o.cs,
		rawClient: cmp.Or(o.rawClient, rawConn(client)), rawBackend: cmp.Or(o.rawBackend, rawConn(backend)),
		idle: o.cfg.IdleTimeout, halfClose: o.cfg.HalfCloseTimeout,
		ended: [2]chan struct{}{make(chan struct{}), make(chan struct{})}}
	now := time.Now()
	s.lastActive.Store(now.UnixNano())
	if s.idle > 0 {
		_ = client.SetReadDeadline(now.Add(s.idle))
		_ = backend.SetReadDeadline(now.Add(s.idle))
	}
	var wg sync.WaitGroup
	if s.idle > 0 {
		// While both directions run, both may be waiting to write to peers
		// that do not read, where no read deadline reaches them.
		wg.Go(func() { s.watch(s.ended[0], s.ended[1]) })
	}
	wg.Go(func() { in = s.copy(backend, client, true) })
	out = s.copy(client, backend, false)
	wg.Wait()
	end = endReason(s.end.Load())
	if end == endClean {
		_ = client.Close()
		_ = backend.Close()
	} // else both were reset by abort
	return in, out, end, s.err
}

// copy moves bytes from src to dst until src ends or the stream is
// aborted. up is true for client → backend.
func (s *stream) copy(dst, src net.Conn, up bool) (total int64) {
	me := 1
	if up {
		me = 0
	}
	defer close(s.ended[me])
	var rc, wc syscall.RawConn // both set: plain TCP both sides, splice possible
	if tc, ok := src.(*net.TCPConn); ok {
		rc, _ = tc.SyscallConn()
		if td, ok := dst.(*net.TCPConn); ok {
			wc, _ = td.SyscallConn()
		}
	}
	if h := testHookCopy; h != nil {
		h(dst, src)
	}
	if h := testHookRead; h != nil {
		h(rc != nil)
	}
	var rr *rawReader
	if rc != nil && rawReads {
		rr = newRawReader(rc)
	}
	// Written with raw system calls when dst is a plain socket (sysConn);
	// Close, CloseWrite and the rest stay dst's.
	w := io.Writer(dst)
	if _, ok := dst.(*net.TCPConn); ok {
		w = sysConnOf(dst)
	}
	var live *atomic.Uint64
	if s.cs != nil {
		live = &s.cs.bytesOut
		if up {
			live = &s.cs.bytesIn
		}
	}
	bulk := false // move the next chunk by splice
	for {
		var (
			n          int
			rerr, werr error
		)
		if bulk {
			n, rerr, werr = spliceChunk(rc, wc)
			bulk = n >= spliceMin
			if rerr == errNoPipe {
				rerr, wc = nil, nil // no splice for this direction from now on
			}
			if h := testHookSplice; h != nil && n > 0 {
				h(n)
			}
		} else {
			var bp *[]byte
			bp, n, rerr = readChunk(src, rr)
			bulk = wc != nil && n == copyBufSize // a full buffer: more is waiting
			if n > 0 {
				// What the write took, not what was read: a write cut by a
				// reset counts only the bytes that went out.
				n, werr = w.Write((*bp)[:n])
			}
			if bp != nil && rr == nil {
				wrappedBufPool.Put(bp)
			} else if bp != nil {
				bufPool.Put(bp)
			}
		}
		if n > 0 {
			total += int64(n)
			s.stats.addBytes(up, uint64(n))
			if live != nil {
				live.Add(uint64(n))
			}
			s.lastActive.Store(time.Now().UnixNano())
		}
		switch {
		case werr != nil:
			s.abort(endError, werr)
			return total
		case rerr == nil:
		case rerr == io.EOF && tlsTruncated(src):
			s.abort(endError, errTruncated)
			return total
		case rerr == io.EOF:
			if s.endDirection(dst, src) {
				raw := s.rawBackend
				if up {
					raw = s.rawClient
				}
				s.awaitOther(s.ended[1-me], raw)
			}
			return total
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			if reason := s.timedOut(src); reason != endClean {
				s.abort(reason, nil)
				return total
			}
		default:
			s.abort(endError, rerr)
			return total
		}
	}
}

// errTruncated ends a stream whose TLS peer's connection ended without
// close_notify (tlsTruncated): the stream was cut off, so the other side
// gets a reset, not a clean end.
var errTruncated = errors.New("forward: TLS peer's connection ended without close_notify")

// rawReader reads a plain TCP socket through its RawConn. It lives as
// long as one direction of a stream, so the callback RawConn.Read takes
// is made once, not per read.
type rawReader struct {
	rc   syscall.RawConn
	read func(fd uintptr) bool // r.readFD, bound once

	// Results of the last readFD.
	bp   *[]byte
	n    int
	serr error
}

func newRawReader(rc syscall.RawConn) *rawReader {
	r := &rawReader{rc: rc}
	r.read = r.readFD
	return r
}

// readFD is the RawConn.Read callback: it takes a buffer only to read
// into it, and gives it back when the socket has nothing yet.
func (r *rawReader) readFD(fd uintptr) bool {
	r.bp = bufPool.Get().(*[]byte)
	var again bool
	r.n, again, r.serr = readNonblock(fd, *r.bp)
	if again {
		bufPool.Put(r.bp)
		r.bp = nil
		return false // wait until readable, holding nothing
	}
	return true
}

// readChunk reads the next bytes of src into a pooled buffer, which the
// caller puts back (to wrappedBufPool when r is nil, else bufPool). With r (a plain TCP socket) the buffer is taken only
// once the socket has bytes, so a connection waiting for data holds none.
func readChunk(src net.Conn, r *rawReader) (bp *[]byte, n int, err error) {
	if r == nil {
		// A wrapped conn: its Read blocks holding the buffer (TLS may
		// have plaintext buffered, so the socket cannot tell).
		bp = wrappedBufPool.Get().(*[]byte)
		n, err = src.Read(*bp)
		return bp, n, err
	}
	r.bp, r.n, r.serr = nil, 0, nil
	err = r.rc.Read(r.read)
	bp, n, serr := r.bp, r.n, r.serr
	r.bp = nil
	switch {
	case err != nil: // deadline, or closed
		if bp != nil {
			bufPool.Put(bp)
		}
		return nil, 0, err
	case serr != nil:
		bufPool.Put(bp)
		return nil, 0, os.NewSyscallError("read", serr)
	case n == 0:
		bufPool.Put(bp)
		return nil, 0, io.EOF
	}
	return bp, n, nil
}

// endDirection passes a clean end of src on: dst is half-closed for
// writing (FIN, or close_notify over TLS) and src for reading. A conn
// without CloseWrite (a seam's) is closed both ways. The other direction
// goes on, now under HalfCloseTimeout. It reports whether this was the
// first direction to end.
func (s *stream) endDirection(dst, src net.Conn) (first bool) {
	if cw, ok := dst.(closeWriter); ok {
		_ = cw.CloseWrite()
	} else {
		s.closedBoth.Store(true) // the other direction's error on dst is ours, not a cut
		_ = dst.Close()
	}
	if cr, ok := src.(closeReader); ok {
		_ = cr.CloseRead()
	}
	now := time.Now()
	if !s.halfClosedAt.CompareAndSwap(0, now.UnixNano()) {
		return false // the second direction to end
	}
	if s.halfClose > 0 && (s.idle == 0 || s.halfClose < s.idle) {
		// dst is what the other direction reads: wake it when the limit is due.
		_ = dst.SetReadDeadline(now.Add(s.halfClose))
	}
	return true
}

// awaitOther runs in the direction that ended first, until the other one
// ends. Meanwhile it aborts the stream when a timeout passes (watch), or
// when raw, the socket under this direction's source, now at EOF, is reset: a peer
// that half-closes and then resets has cut the stream, and the other peer,
// which has read our FIN, may never write again to find out. The event
// loop sees such a reset as EPOLLERR; here a wait on the socket does.
func (s *stream) awaitOther(other <-chan struct{}, raw net.Conn) {
	rc := resetWatchable(raw)
	if rc == nil {
		s.watch(other, other)
		return
	}
	// Nothing reads this source any more, so its read deadline is free
	// for stopping the wait below.
	_ = raw.SetReadDeadline(time.Time{})
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := waitSocketError(rc); err != nil {
			s.abort(endError, err)
		}
	})
	s.watch(other, other) // returns at once when no timeout applies
	<-other
	_ = raw.SetReadDeadline(time.Unix(1, 0)) // stop the wait: the stream is over
	wg.Wait()
}

// resetWatchable returns the RawConn of raw when its resets can be waited
// for (a socket, on a system with raw reads), else nil.
func resetWatchable(raw net.Conn) syscall.RawConn {
	sc, ok := raw.(syscall.Conn)
	if !ok || !rawReads {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// waitSocketError waits until the socket behind rc has a pending error
// (SO_ERROR: a reset reads ECONNRESET, or EPIPE once its FIN was read)
// and returns it, or returns nil when the wait ends first (a closed conn,
// a deadline). A socket at EOF stays readable, so the poller reports only
// new events on it: an error, or more bytes under TLS; each is checked.
func waitSocketError(rc syscall.RawConn) error {
	var serr error
	if err := rc.Read(func(fd uintptr) bool {
		serr = socketError(fd)
		return serr != nil
	}); err != nil {
		return nil
	}
	return os.NewSyscallError("read", serr)
}

// watch aborts the stream once the timeout that applies (due) passes
// with no byte moved, until a or b is closed. The read deadlines wake a
// direction only while it reads; one stuck writing to a peer that does
// not read waits in Write, where none reaches it. So the direction that
// ended first watches until the other ends (a half-closed stream has no
// other reader), and with IdleTimeout a goroutine of proxyCopy watches
// while both run.
func (s *stream) watch(a, b <-chan struct{}) {
	due, _ := s.due()
	if due.IsZero() {
		return
	}
	t := time.NewTimer(time.Until(due))
	defer t.Stop()
	for {
		select {
		case <-a:
			return
		case <-b:
			return
		case <-t.C:
		}
		due, reason := s.due()
		if d := time.Until(due); d > 0 {
			t.Reset(d) // bytes moved since: check again then
			continue
		}
		s.abort(reason, nil)
		return
	}
}

// due returns when the stream times out, from its last activity, and
// why; zero when it cannot. As the loop's econn.due, HalfCloseTimeout
// replaces IdleTimeout once a direction ended, when it is the shorter.
func (s *stream) due() (time.Time, endReason) {
	last := s.lastActive.Load()
	limit, reason := s.idle, endIdle
	if hc := s.halfClosedAt.Load(); hc != 0 && s.halfClose > 0 && (s.idle == 0 || s.halfClose < s.idle) {
		limit, reason = s.halfClose, endHalfClose
		last = max(last, hc)
	}
	if limit <= 0 {
		return time.Time{}, endClean
	}
	return time.Unix(0, last).Add(limit), reason
}

// timedOut is called when a read of src hit its deadline. It reports the
// timeout that ended the stream, or endClean after moving the deadline on
// when there was traffic since it was set.
func (s *stream) timedOut(src net.Conn) endReason {
	for {
		hc := s.halfClosedAt.Load()
		due, reason := s.due()
		if due.IsZero() {
			_ = src.SetReadDeadline(time.Time{})
			return endClean
		}
		if !time.Now().Before(due) {
			return reason
		}
		_ = src.SetReadDeadline(due)
		if s.halfClosedAt.Load() == hc {
			return endClean
		}
		// The other direction ended meanwhile and may have set a nearer
		// deadline that ours just overwrote: work it out again.
	}
}

// abort ends the stream for reason by resetting both conns, once; the
// other direction then fails on its closed conn and returns quietly. An
// error from reading or writing a conn we closed ourselves (abort, or
// Shutdown's force-close) is not a stream error.
func (s *stream) abort(reason endReason, err error) {
	if reason == endError && errors.Is(err, net.ErrClosed) {
		if s.closedBoth.Load() {
			return // endDirection closed it: a clean end, closed both ways
		}
		reason = endClosed
	}
	if !s.end.CompareAndSwap(int32(endClean), int32(reason)) {
		return
	}
	s.err = err
	s.stats.count(reason)
	resetConn(s.client, s.rawClient)
	resetConn(s.backend, s.rawBackend)
}

// resetConn closes c so that its peer reads a reset, not a clean end: the
// socket raw under it gets SO_LINGER 0 and is closed first, which sends an
// RST, and no close_notify over TLS. c itself is closed too, so that a
// Handshake wrapper's goroutines end.
func resetConn(c, raw net.Conn) {
	if tc, ok := raw.(interface{ SetLinger(int) error }); ok { // a *net.TCPConn, or a sysConn over one
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
	if _, isTLS := c.(*tls.Conn); c != raw && !isTLS {
		_ = c.Close()
	}
}

type closeWriter interface{ CloseWrite() error }
type closeReader interface{ CloseRead() error }
