//go:build linux

package forward

import (
	"container/heap"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loop owns the copy phase of plain TCP streams (both conns
// *net.TCPConn, no wrapper) and of keyed ones (one side a *tls.Conn over a
// sysConn; tlsloop_linux.go tells what differs): a few loops, one per
// GOMAXPROCS, each with an epoll instance, move the bytes of every stream
// they own with one read and one write per message and no goroutine per
// direction.
//
// One stream's life in a loop:
//   - it comes in one of two ways. A connection a Proxy accepted on the
//     raw path (evaccept_linux.go) arrives as two descriptors, the
//     client's and a backend socket still connecting (econn.dial); the
//     loop waits for the connect (EPOLLOUT, then SO_ERROR), leaving the
//     client's bytes in its socket, and on success goes on as below; a
//     failed or slow connect leaves the loop (dialEnd) for the goroutine
//     path. Otherwise evLoops.start takes a copy of both connected
//     sockets' descriptors (dup) and closes the net.Conns (which takes
//     the sockets out of Go's poller). Either way both descriptors are in
//     one loop's epoll, edge-triggered, for input, output and the peer's
//     FIN (EPOLLRDHUP);
//   - when a socket has bytes, the loop reads them into its one shared
//     buffer and writes them straight to the other socket. A read that
//     does not fill the buffer emptied the socket, so the loop waits for
//     the next edge instead of reading again to EAGAIN. Only when a write
//     is short are the rest copied to a pooled buffer, and the source is
//     not read again until the destination took them (EPOLLOUT);
//   - a read that fills the buffer means bulk data: that direction moves
//     through a pooled pipe with splice(2) (splice_linux.go) until a
//     splice moves less than spliceMin;
//   - a clean end (EOF) half-closes the other socket (shutdown SHUT_WR)
//     once pending bytes are written; the other direction goes on under
//     HalfCloseTimeout. Both ends clean: both sockets are closed (the
//     second end needs no shutdown: the close sends its FIN);
//   - a read or write error, a socket error (EPOLLERR: a reset), a timeout
//     or a force-close resets both sockets (SO_LINGER 0, then close);
//   - idle and half-close timeouts are kept in one heap per loop, checked
//     lazily: traffic only stamps the stream, and a due entry is pushed
//     back when the stream was active since;
//   - at the end the loop calls the caller's then with in, out, how it
//     ended and the error, which does the accounting the caller does after
//     the goroutine copy (stream.go) and ends the connection. No goroutine
//     waits for a stream in a loop: an idle connection costs its two
//     sockets, an econn and the caller's bookkeeping.

// loopMode selects the copy path for plain TCP streams: the event loop
// unless AMBASSADOR_FORWARD_LOOP=0 in the environment, which keeps the
// goroutine copy of stream.go (for tests and side-by-side benchmarks).
var loopMode = os.Getenv("AMBASSADOR_FORWARD_LOOP") != "0"

// evLoops are the event loops of one Proxy or Server, started on the
// first stream and stopped by its drain. The zero value is ready.
type evLoops struct {
	mu     sync.Mutex
	loops  []*evLoop // guarded by mu; started on first use
	closed bool      // guarded by mu; abortAll or stop ran: no new streams
	next   atomic.Uint32
	wg     sync.WaitGroup // the loops' goroutines
}

// start hands the stream between client and backend to an event loop
// when both are plain TCP, and reports whether it did. Then the caller's
// goroutine may end: the loop calls then with the bytes copied client →
// backend (in) and backend → client (out), how the stream ended and, for
// endError, the error, from its own goroutine, so then must not block.
// On false both conns are untouched, for the goroutine copy (proxyCopy).
func (ls *evLoops) start(client, backend net.Conn, o copyOpts, then func(in, out int64, end endReason, err error)) bool {
	if !loopMode {
		return false
	}
	cc, ctls, ok1 := loopSocket(client, o.rawClient)
	bc, btls, ok2 := loopSocket(backend, o.rawBackend)
	if !ok1 || !ok2 {
		return false
	}
	l := ls.pick()
	if l == nil {
		return false
	}
	cfd, err := dupSocket(cc)
	if err != nil {
		return false // closed under us: the goroutine copy ends it
	}
	bfd, err := dupSocket(bc)
	if err != nil {
		_ = unix.Close(cfd)
		return false
	}
	if h := testHookCopy; h != nil {
		h(backend, client)
		h(client, backend)
	}
	if h := testHookRead; h != nil {
		h(ctls == nil)
		h(btls == nil)
	}
	// Our copies keep the sockets open; closing the conns takes them out
	// of Go's poller, so only our loop is woken for them.
	_ = cc.Close()
	_ = bc.Close()
	e := &econn{fd: [2]int{cfd, bfd}, stats: o.stats, cs: o.cs, then: then,
		idle: int64(o.cfg.IdleTimeout), halfClose: int64(o.cfg.HalfCloseTimeout), tidx: -1}
	e.last = time.Now().UnixNano()
	for side, tc := range [2]*tls.Conn{ctls, btls} {
		if tc != nil {
			e.driveTLS(side, tc)
		}
	}
	if !l.add(e) {
		resetFD(cfd)
		resetFD(bfd)
		then(0, 0, endClosed, nil)
	}
	return true
}

// loopCount is the number of event loops: half of GOMAXPROCS as the
// process started, at least one. It is read before main may lower
// GOMAXPROCS while the node is idle (issue 10), so that loops started then
// still count the CPUs once it is raised.
//
// Why half (issue 9, session 9): on the mesh's two-hop GET path on two
// cores, where the client, the service and both ambassadors share the
// CPUs, one loop per Proxy or Server gave more requests per second for
// less CPU per request, and a third of the thread migrations, than one
// per CPU (docs/benchmarks.md, session 9). Half leaves the other CPUs to
// the peers a proxy moves bytes for, which run on the same host.
//
// Session 14 tried one per CPU again, one hop included, where HAProxy runs
// two threads (docs/benchmarks.md, session 14): in four full one-hop
// peerbench runs two loops gave no gain (SET 0.88-1.06x, GET 0.87-0.97x,
// -P16 GET 0.88-1.03x of one loop; new connections level) for more CPU
// per request in three runs of four, and on the two-hop mesh they cost
// 12-18 % of GET ops/s and a fifth more CPU per request in both runs. Not
// measured on more than two cores.
//
// AMBASSADOR_FORWARD_LOOPS=N in the environment (1 ≤ N ≤ 256) overrides
// it, so that one binary can be compared with itself (loops_linux.go);
// another value is ignored with a warning.
var loopCount = loopsFromEnv(os.Getenv("AMBASSADOR_FORWARD_LOOPS"), max(1, runtime.GOMAXPROCS(0)/2))

// pick returns a loop for a new stream, starting the loops on first use,
// or nil once the loops are closed or cannot start.
func (ls *evLoops) pick() *evLoop {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return nil
	}
	if ls.loops == nil {
		for range loopCount {
			l, err := newEvLoop()
			if err != nil {
				break
			}
			ls.loops = append(ls.loops, l)
			ls.wg.Go(l.run)
		}
		if len(ls.loops) == 0 {
			ls.closed = true
			return nil
		}
	}
	return ls.loops[ls.next.Add(1)%uint32(len(ls.loops))] // unsigned: no negative index on 32-bit ints
}

// abortAll resets every stream the loops own, for a force-close, and
// refuses new ones.
func (ls *evLoops) abortAll() {
	ls.mu.Lock()
	ls.closed = true
	loops := ls.loops
	ls.mu.Unlock()
	for _, l := range loops {
		l.mu.Lock()
		l.abort = true
		l.mu.Unlock()
		l.wake()
	}
}

// stop ends the loops and waits for their goroutines. The caller has
// waited for every stream to end (group.drain). Safe to call more than
// once.
func (ls *evLoops) stop() {
	ls.mu.Lock()
	ls.closed = true
	loops := ls.loops
	ls.loops = nil
	ls.mu.Unlock()
	for _, l := range loops {
		l.mu.Lock()
		l.stop, l.abort = true, true
		l.mu.Unlock()
		l.wake()
	}
	ls.wg.Wait()
}

// dupSocket returns a close-on-exec copy of c's descriptor. It shares the
// socket and its O_NONBLOCK with c.
func dupSocket(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return nfd, derr
}

// resetFD closes fd so that its peer reads a reset (SO_LINGER 0).
func resetFD(fd int) {
	sysLingerZero(fd)
	sysClose(fd)
}

// econn is one stream in a loop. Direction 0 is client → backend (fd[0]
// to fd[1]), direction 1 backend → client. Only the loop touches it after
// add.
type econn struct {
	fd    [2]int
	dir   [2]edir
	n     [2]int64 // bytes written per direction
	stats *streamStats
	cs    *connState // nil on a Server

	idle, halfClose int64 // nanoseconds; 0 = none
	last            int64 // UnixNano of the last write either way
	halfAt          int64 // UnixNano when one direction ended cleanly; 0 = not yet

	at   int64 // when its timer entry is due (UnixNano)
	tidx int   // index in the loop's timerHeap; -1 = not in it

	closed bool
	then   func(in, out int64, end endReason, err error) // start's; called once, at the end

	// tls[side] is the TLS conn over fd[side] when that side is a keyed
	// hop (tlsloop_linux.go), else nil; closeSent[side], that its
	// close_notify is written.
	tls       [2]*tls.Conn
	closeSent [2]bool

	// dial is set while the loop waits for the backend socket (fd[1]) to
	// connect (evaccept_linux.go); nil once it did, or for a stream that
	// start handed over connected.
	dial *loopDial
}

// loopDial is a connect the loop waits for: a stream whose backend socket
// was connected non-blocking, with the client's bytes held in its socket
// until the connect is done.
type loopDial struct {
	at int64 // UnixNano: the loop stops waiting then (see handOver)
	// handOver: at at, give the still-connecting socket to failed (the
	// goroutine path starts the next attempt next to it); otherwise the
	// connect has failed with a timeout by then.
	handOver bool
	// connected is called once the connect succeeded, before any byte
	// moves; it returns the connState to count bytes in (nil = none).
	connected func() *connState
	// failed is called when the connect failed (bfd is -1: closed) or at
	// at with handOver (bfd still connecting). Both descriptors are out of
	// the loop, and failed owns them; then is never called.
	failed func(cfd, bfd int, err error)
}

// edir is one direction of a stream: its source's state and the bytes
// read but not yet written to its destination.
type edir struct {
	readable bool // the source may have bytes: an edge came and no short read since
	rdhup    bool // the source's peer sent FIN: after a short read comes EOF
	eof      bool // the source ended cleanly
	shut     bool // the destination was shut down for writing: this direction is done
	bulk     bool // move the next chunk by splice
	noSplice bool // no pipe could be had: buffer only

	buf  *[]byte // pending bytes, from bufPool; nil when none
	off  int     // (*buf)[off:len] are pending
	blen int
	pipe *pipe // pending bytes in a pipe; nil when none
	left int   // bytes pending in pipe
}

func (d *edir) pending() bool { return d.buf != nil || d.pipe != nil }

// keep appends b to d's pending bytes.
func (d *edir) keep(b []byte) {
	if len(b) == 0 {
		return
	}
	if d.buf == nil {
		d.buf, d.off, d.blen = bufPool.Get().(*[]byte), 0, 0
	}
	buf := *d.buf
	if d.blen+len(b) > len(buf) {
		// Rarely: a TLS write of a full buffer, or a record behind bytes
		// already waiting. The rest moves to a buffer that holds it all.
		nb := make([]byte, max(2*len(buf), d.blen-d.off+len(b)))
		n := copy(nb, buf[d.off:d.blen])
		putBuf(d.buf)
		d.buf, d.off, d.blen, buf = &nb, 0, n, nb
	}
	d.blen += copy(buf[d.blen:], b)
}

// putBuf gives bp back to bufPool, unless keep made it a larger one.
func putBuf(bp *[]byte) {
	if len(*bp) == copyBufSize {
		bufPool.Put(bp)
	}
}

// evLoop is one epoll instance and the goroutine that waits on it.
type evLoop struct {
	epfd, wakefd int
	// ep is epfd as a pollable file: the loop waits for its streams in Go's
	// own poller (an epoll fd is readable when it has events), so no
	// thread blocks in epoll_wait and timers are a read deadline.
	ep   *os.File
	eprc syscall.RawConn

	mu     sync.Mutex
	conns  map[int32]*econn // guarded by mu; both descriptors of every stream
	timed  []*econn         // guarded by mu; new streams with an IdleTimeout, for the heap
	fresh  []*econn         // guarded by mu; new streams with TLS, to read once without an edge
	abort  bool             // guarded by mu; reset every stream, refuse new ones
	stop   bool             // guarded by mu; end the loop
	waitDL int64            // guarded by mu; the deadline of the loop's last wait (UnixNano); 0 = none
	waking atomic.Bool      // a wake is pending: later wakes need no write

	// Owned by the loop's goroutine.
	buf    []byte
	events []unix.EpollEvent
	batch  []*econn
	again  []*econn // streams with a direction to read on without a new edge
	timers timerHeap
	now    int64
	dl     int64 // the read deadline set on ep (UnixNano); 0 = none
	n      int   // events from the last epoll_wait
	waitFn func(fd uintptr) bool
}

func newEvLoop() (*evLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)}); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// Non-blocking, so that os.NewFile puts it in Go's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	l := &evLoop{epfd: epfd, wakefd: wfd, ep: os.NewFile(uintptr(epfd), "epoll"), conns: make(map[int32]*econn),
		buf: make([]byte, copyBufSize), events: make([]unix.EpollEvent, 256), batch: make([]*econn, 256)}
	var rcErr error
	if l.eprc, rcErr = l.ep.SyscallConn(); rcErr == nil {
		rcErr = l.ep.SetReadDeadline(time.Time{}) // fails when the file is not in Go's poller
	}
	if rcErr != nil {
		_ = l.ep.Close()
		_ = unix.Close(wfd)
		return nil, rcErr
	}
	l.waitFn = func(uintptr) bool {
		l.n = epollWaitNow(l.epfd, l.events)
		return l.n != 0
	}
	return l, nil
}

// epollWaitNow returns the events epfd has now, without blocking: a raw
// syscall, since it cannot block.
func epollWaitNow(epfd int, events []unix.EpollEvent) int {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if errno != unix.EINTR {
			if errno != 0 {
				return 0
			}
			return int(n)
		}
	}
}

// wait fills l.events with the next events, waiting in Go's poller until
// there are some or the next timer is due.
func (l *evLoop) wait() int {
	l.mu.Lock()
	for _, e := range l.timed {
		if !e.closed {
			l.schedule(e)
		}
	}
	clear(l.timed)
	l.timed = l.timed[:0]
	l.again = append(l.again, l.fresh...)
	clear(l.fresh)
	l.fresh = l.fresh[:0]
	var dl int64
	if len(l.timers) > 0 {
		dl = l.timers[0].at
	}
	if len(l.again) > 0 {
		l.waitDL = -1 // not waiting: add needs no wake
		l.mu.Unlock()
		return epollWaitNow(l.epfd, l.events)
	}
	// add reads it: a stream due before it must wake the loop, one due
	// later is taken from timed before the next wait.
	l.waitDL = dl
	l.mu.Unlock()
	if dl != l.dl {
		t := time.Time{}
		if dl != 0 {
			t = time.Unix(0, dl)
		}
		_ = l.ep.SetReadDeadline(t)
		l.dl = dl
	}
	l.n = 0
	if err := l.eprc.Read(l.waitFn); err != nil {
		l.dl = -1 // a deadline passed (or the file closed): set it anew
		return 0
	}
	return l.n
}

// wake interrupts the loop's epoll_wait.
func (l *evLoop) wake() {
	if l.waking.Swap(true) {
		return
	}
	var one = [8]byte{1}
	_, _ = writeFD(l.wakefd, one[:]) // non-blocking eventfd: raw
}

const streamEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// add gives e to the loop. It reports false, and e is not the loop's,
// when the loop is aborting or the sockets cannot be polled. l.mu is held
// from the abort check through both registrations and their undoing, so
// that abortAll or the loop never see a half-added stream: otherwise a
// force-close between the two could end e in the loop while start, seeing
// a failed registration, resets the same descriptors (maybe reused by
// then) and calls then a second time.
func (l *evLoop) add(e *econn) bool {
	l.mu.Lock()
	if l.abort {
		l.mu.Unlock()
		return false
	}
	var err error
	for i, fd := range e.fd {
		if err = sysEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: streamEvents, Fd: int32(fd)}); err != nil {
			if i == 1 {
				_ = sysEpollCtl(l.epfd, unix.EPOLL_CTL_DEL, e.fd[0], nil)
			}
			break
		}
	}
	if err != nil {
		l.mu.Unlock()
		return false
	}
	l.conns[int32(e.fd[0])] = e
	l.conns[int32(e.fd[1])] = e
	wake := false
	if e.tls != [2]*tls.Conn{} {
		// TLS may hold bytes it read before the loop took over, which
		// no edge will announce: the loop reads them first (run).
		l.fresh = append(l.fresh, e)
		wake = true
	}
	if at, _ := e.due(); at != 0 {
		l.timed = append(l.timed, e)
		// Only when the loop waits with a later deadline, or none: a new
		// connect every few microseconds must not cost a wake each.
		wake = wake || l.waitDL == 0 || at < l.waitDL
	}
	l.mu.Unlock()
	if wake {
		l.wake()
	}
	return true
}

// run waits for events and handles them until stop.
func (l *evLoop) run() {
	defer func() {
		_ = l.ep.Close()
		_ = unix.Close(l.wakefd)
	}()
	for {
		n := l.wait()
		l.now = time.Now().UnixNano()
		woken := false
		l.mu.Lock()
		for i := range max(n, 0) {
			fd := l.events[i].Fd
			if int(fd) == l.wakefd {
				woken = true
			}
			l.batch[i] = l.conns[fd]
		}
		l.mu.Unlock()
		if woken {
			// Drained before the flag is cleared: a wake that finds the
			// flag set skipped its write, and its flags are read below; a
			// wake after the clear writes anew, and no read here can eat
			// that write. Cleared first, a wake between the two had its
			// write eaten with the flag left set, and every later wake
			// (a stop's too) skipped its write: the loop slept for ever.
			var b [8]byte
			_, _ = readFD(l.wakefd, b[:])
			l.waking.Store(false)
		}
		l.mu.Lock()
		abort, stop := l.abort, l.stop
		l.mu.Unlock()
		for i := range max(n, 0) {
			if e := l.batch[i]; e != nil && !e.closed {
				l.handle(e, int(l.events[i].Fd), l.events[i].Events)
			}
			l.batch[i] = nil
		}
		if len(l.again) > 0 {
			again := l.again
			l.again = nil
			for _, e := range again {
				for d := range 2 {
					if !e.closed && e.mayRead(d) && !e.dir[d].pending() && !e.dir[d].eof {
						l.pump(e, d)
					}
				}
			}
		}
		l.expire()
		if abort {
			l.abortAll()
		}
		if stop {
			return
		}
	}
}

// handle acts on events ev of socket fd of stream e.
func (l *evLoop) handle(e *econn, fd int, ev uint32) {
	side := 0
	if fd == e.fd[1] {
		side = 1
	}
	if e.dial != nil {
		if side == 0 {
			// The client's bytes wait in its socket until the connect is
			// done; an error (a reset) ends the stream now.
			if ev&unix.EPOLLERR == 0 {
				l.note(e, 0, ev)
				return
			}
			err := error(unix.ECONNRESET)
			if serr, gerr := sysGetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && serr != 0 {
				err = unix.Errno(serr)
			}
			l.abortStream(e, endError, os.NewSyscallError("read", err))
			return
		} else {
			if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 || !l.connected(e, ev) {
				return
			}
			if d := &e.dir[0]; d.readable {
				l.pump(e, 0) // bytes the client sent while the connect ran
				if e.closed {
					return
				}
			}
			ev &^= unix.EPOLLERR // checked by connected
		}
	}
	if ev&unix.EPOLLERR != 0 {
		if serr, err := sysGetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && serr != 0 {
			l.abortStream(e, endError, os.NewSyscallError("read", unix.Errno(serr)))
			return
		}
	}
	l.note(e, side, ev)
	// fd is the destination of the other direction: write what waits.
	if o := &e.dir[1-side]; o.pending() && ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.flush(e, 1-side)
		if e.closed {
			return
		}
	}
	if d := &e.dir[side]; d.readable && !d.pending() && !d.eof {
		l.pump(e, side)
	}
}

// note records what events ev say of the source of direction side.
func (l *evLoop) note(e *econn, side int, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		e.dir[side].readable = true
		if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
			e.dir[side].rdhup = true
		}
	}
}

// connected checks the connect of e's backend socket after events ev on
// it. On success it ends the dial and reports true; on failure it hands
// both sockets back (dialEnd) and reports false.
//
// Only an EPOLLERR or EPOLLHUP asks the socket for its error (SO_ERROR):
// Linux's tcp_poll reports no EPOLLOUT while a connect is under way, and
// a failed one always carries EPOLLERR (the error) and EPOLLHUP (closed),
// so EPOLLOUT alone is a connect that succeeded: a system call less per
// connection (HAProxy makes none).
func (l *evLoop) connected(e *econn, ev uint32) bool {
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		if err := sysSoError(e.fd[1]); err != nil {
			l.dialEnd(e, os.NewSyscallError("connect", err), false)
			return false
		}
	}
	d := e.dial
	e.dial = nil
	e.cs = d.connected()
	e.last = l.now
	return true
}

// dialEnd ends the loop's part of e's connect, which failed with err, or,
// with handOver, has gone unanswered for DialAttempt: both sockets leave
// the loop and go to e.dial.failed, the backend's closed unless handOver.
func (l *evLoop) dialEnd(e *econn, err error, handOver bool) {
	e.closed = true
	if e.tidx >= 0 {
		heap.Remove(&l.timers, e.tidx)
	}
	l.mu.Lock()
	delete(l.conns, int32(e.fd[0]))
	delete(l.conns, int32(e.fd[1]))
	l.mu.Unlock()
	_ = sysEpollCtl(l.epfd, unix.EPOLL_CTL_DEL, e.fd[0], nil)
	_ = sysEpollCtl(l.epfd, unix.EPOLL_CTL_DEL, e.fd[1], nil)
	bfd := e.fd[1]
	if !handOver {
		sysClose(bfd)
		bfd = -1
	}
	e.dial.failed(e.fd[0], bfd, err)
}

// maxChunks bounds the reads of one direction per wake-up, so that one
// bulk stream does not starve the loop's others.
const maxChunks = 16

// pump moves bytes of direction d from its source to its destination
// until the source is empty, a write is short, or it ends.
func (l *evLoop) pump(e *econn, d int) {
	if e.tls != [2]*tls.Conn{} {
		l.pumpTLS(e, d)
		return
	}
	dir := &e.dir[d]
	for range maxChunks {
		if dir.bulk && !dir.noSplice {
			if !l.spliceStep(e, d) {
				return
			}
			continue
		}
		n, next, err := l.readStep(e, d)
		if err != nil {
			l.abortStream(e, endError, err)
			return
		}
		if n > 0 && !l.writeStep(e, d, n) {
			return
		}
		switch {
		case next == srcEnded:
			l.endDirection(e, d)
			return
		case next == srcEmpty || dir.pending():
			return
		}
		dir.bulk = true // a full buffer: more is waiting
	}
	l.again = append(l.again, e)
}

// writeStep writes l.buf[:n] to direction d's plain destination socket,
// for pump and for pumpTLS when the destination is plain. What the socket
// does not take is kept, and the direction reads no more until EPOLLOUT
// says it took it (flush); an end read already waits for it
// (endDirection). It reports false when the write failed and the stream
// was aborted.
func (l *evLoop) writeStep(e *econn, d, n int) bool {
	w, err := writeFD(e.fd[1-d], l.buf[:n])
	if err != nil && err != unix.EAGAIN {
		l.abortStream(e, endError, os.NewSyscallError("write", err))
		return false
	}
	l.account(e, d, w)
	e.dir[d].keep(l.buf[w:n])
	return true
}

// srcNext is what one read of a stream's source socket says of it.
type srcNext int

const (
	srcMore  srcNext = iota // the read filled the buffer: more may wait
	srcEmpty                // a short read or EAGAIN emptied it: the next bytes bring an edge
	srcEnded                // EOF, or a short read after the peer's FIN: a clean end
)

// readStep reads direction d's source socket once into l.buf, for pump
// and for pumpTLS when the source is plain. It returns the bytes read,
// what the read says of the source, and a read error (a reset), which
// ends the stream. A read that does not fill the buffer emptied the
// socket, so the direction waits for the next edge instead of reading
// again to EAGAIN; when the peer's FIN came first (rdhup), that read was
// the last.
func (l *evLoop) readStep(e *econn, d int) (int, srcNext, error) {
	dir := &e.dir[d]
	n, err := readFD(e.fd[d], l.buf)
	switch {
	case err == unix.EAGAIN:
		dir.readable = false
		return 0, srcEmpty, nil
	case err != nil:
		return 0, srcEmpty, os.NewSyscallError("read", err)
	case n == 0:
		return 0, srcEnded, nil
	case n < len(l.buf):
		dir.readable = false
		if dir.rdhup {
			return n, srcEnded, nil
		}
		return n, srcEmpty, nil
	}
	return n, srcMore, nil
}

// spliceStep moves one chunk of direction d through a pooled pipe. It
// reports whether to go on reading.
func (l *evLoop) spliceStep(e *econn, d int) bool {
	dir := &e.dir[d]
	src, dst := e.fd[d], e.fd[1-d]
	p, err := getPipe()
	if err != nil {
		dir.noSplice = true
		return true
	}
	var m int64
	for {
		m, err = splice(src, p.w, p.size, spliceFlags)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case err == unix.EAGAIN:
		putPipe(p)
		dir.readable = false
		return false
	case err != nil:
		putPipe(p)
		l.abortStream(e, endError, os.NewSyscallError("splice", err))
		return false
	case m == 0:
		putPipe(p)
		l.endDirection(e, d)
		return false
	}
	left, werr := splicePipe(p, dst, int(m))
	if werr != nil {
		p.discard()
		l.abortStream(e, endError, os.NewSyscallError("splice", werr))
		return false
	}
	l.account(e, d, int(m)-left)
	if h := testHookSplice; h != nil {
		h(int(m) - left)
	}
	if left > 0 {
		dir.pipe, dir.left = p, left
		return false
	}
	putPipe(p)
	// A short splice does not mean the socket is empty (a non-blocking
	// splice from TCP stops after the first batch of segments), so bulk
	// mode reads on until EAGAIN.
	dir.bulk = m >= spliceMin
	return true
}

// splicePipe moves up to n bytes from p to fd and returns how many are
// left in p: more than 0 when fd is full.
func splicePipe(p *pipe, fd, n int) (left int, err error) {
	left = n
	for left > 0 {
		m, err := splice(p.r, fd, left, spliceFlags)
		switch err {
		case nil:
			left -= int(m)
		case unix.EINTR:
		case unix.EAGAIN:
			return left, nil
		default:
			return left, err
		}
	}
	return 0, nil
}

// flush writes the pending bytes of direction d, then goes on with the
// direction when they are all out.
func (l *evLoop) flush(e *econn, d int) {
	dir := &e.dir[d]
	dst := e.fd[1-d]
	if dir.pipe != nil {
		left, err := splicePipe(dir.pipe, dst, dir.left)
		l.account(e, d, dir.left-left)
		dir.left = left
		if err != nil {
			l.abortStream(e, endError, os.NewSyscallError("splice", err))
			return
		}
		if left > 0 {
			return
		}
		putPipe(dir.pipe)
		dir.pipe = nil
	} else {
		w, err := writeFD(dst, (*dir.buf)[dir.off:dir.blen])
		if err != nil && err != unix.EAGAIN {
			l.abortStream(e, endError, os.NewSyscallError("write", err))
			return
		}
		if e.tls[1-d] == nil {
			l.account(e, d, w)
		} else if w > 0 {
			// TLS counted the plaintext when it took it; the ciphertext
			// moving out is still activity (HalfCloseTimeout, IdleTimeout).
			e.last = l.now
		}
		dir.off += w
		if dir.off < dir.blen {
			return
		}
		putBuf(dir.buf)
		dir.buf = nil
	}
	if dir.eof {
		l.endDirection(e, d)
	} else if e.mayRead(d) {
		l.pump(e, d)
	}
}

// account counts n bytes written in direction d.
func (l *evLoop) account(e *econn, d int, n int) {
	if n <= 0 {
		return
	}
	e.n[d] += int64(n)
	e.stats.addBytes(d == 0, uint64(n))
	if e.cs != nil {
		if d == 0 {
			e.cs.bytesIn.Add(uint64(n))
		} else {
			e.cs.bytesOut.Add(uint64(n))
		}
	}
	e.last = l.now
}

// endDirection passes a clean end of direction d's source on: once its
// pending bytes are written, the destination is shut down for writing
// (FIN). The first direction to end starts HalfCloseTimeout; the second
// closes the stream.
func (l *evLoop) endDirection(e *econn, d int) {
	dir := &e.dir[d]
	dir.eof, dir.readable = true, false
	if tc := e.tls[1-d]; tc != nil && !e.closeSent[1-d] {
		// Over TLS the end travels as close_notify, queued behind the
		// bytes still pending, as the goroutine copy's CloseWrite.
		e.closeSent[1-d] = true
		if err := tc.CloseWrite(); err != nil {
			l.abortStream(e, endError, fmt.Errorf("close_notify: %w", err))
			return
		}
	}
	if dir.pending() || dir.shut {
		return
	}
	dir.shut = true
	if e.dir[1-d].shut {
		// The other way is done too: the close sends the FIN a shutdown
		// would (a reset instead when unread bytes wait, as after a
		// shutdown), one call less per connection.
		l.closeStream(e, endClean, nil)
		return
	}
	if e.tls[1-d] == nil {
		sysShutdown(e.fd[1-d], unix.SHUT_WR) // over TLS: close_notify only, as the goroutine copy
	}
	e.halfAt = l.now
	l.schedule(e)
}

// due returns when e times out and why, or 0 when it cannot; as
// stream.timedOut, HalfCloseTimeout replaces IdleTimeout once a
// direction ended, when it is the shorter.
func (e *econn) due() (int64, endReason) {
	if e.dial != nil {
		return e.dial.at, endError // expire ends the dial, not the stream
	}
	limit, reason, last := e.idle, endIdle, e.last
	if e.halfAt != 0 && e.halfClose > 0 && (e.idle == 0 || e.halfClose < e.idle) {
		limit, reason, last = e.halfClose, endHalfClose, max(last, e.halfAt)
	}
	if limit <= 0 {
		return 0, endClean
	}
	return last + limit, reason
}

// expire resets the streams whose timeout is due.
func (l *evLoop) expire() {
	now := time.Now().UnixNano()
	for len(l.timers) > 0 && l.timers[0].at <= now {
		e := heap.Pop(&l.timers).(*econn)
		at, reason := e.due()
		switch {
		case at == 0:
		case at > now:
			e.at = at // traffic since: check again then
			heap.Push(&l.timers, e)
		case e.dial != nil:
			err := error(nil)
			if !e.dial.handOver {
				err = &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
			}
			l.dialEnd(e, err, e.dial.handOver)
		default:
			l.abortStream(e, reason, nil)
		}
	}
}

// abortAll resets every stream of the loop (force-close).
func (l *evLoop) abortAll() {
	l.mu.Lock()
	es := make([]*econn, 0, len(l.conns))
	for fd, e := range l.conns {
		if int(fd) == e.fd[0] {
			es = append(es, e)
		}
	}
	l.mu.Unlock()
	for _, e := range es {
		l.abortStream(e, endClosed, nil)
	}
}

// abortStream ends e by resetting both sockets.
func (l *evLoop) abortStream(e *econn, reason endReason, err error) {
	if e.closed {
		return
	}
	e.stats.count(reason)
	l.closeStream(e, reason, err)
}

// closeStream takes e out of the loop, closes its sockets (reset unless
// the end is clean), gives back what it borrowed and calls e.then.
func (l *evLoop) closeStream(e *econn, reason endReason, err error) {
	e.closed = true
	if e.tidx >= 0 {
		heap.Remove(&l.timers, e.tidx)
	}
	// Out of the table before the descriptors close: their numbers may be
	// reused by a new stream at once.
	l.mu.Lock()
	delete(l.conns, int32(e.fd[0]))
	delete(l.conns, int32(e.fd[1]))
	l.mu.Unlock()
	for _, fd := range e.fd {
		if reason == endClean {
			sysClose(fd)
		} else {
			resetFD(fd)
		}
	}
	for d := range e.dir {
		dir := &e.dir[d]
		if dir.buf != nil {
			putBuf(dir.buf)
			dir.buf = nil
		}
		if dir.pipe != nil {
			dir.pipe.discard()
			dir.pipe = nil
		}
	}
	e.then(e.n[0], e.n[1], reason, err)
}

// readFD reads a non-blocking socket: a raw syscall, since it cannot
// block.
func readFD(fd int, b []byte) (int, error) {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
		default:
			return 0, errno
		}
	}
}

// writeFD writes b to fd until all is written or fd is full (EAGAIN,
// with the count written so far) or fails.
func writeFD(fd int, b []byte) (int, error) {
	w := 0
	for w < len(b) {
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[w])), uintptr(len(b)-w))
		switch errno {
		case 0:
			w += int(n)
		case unix.EINTR:
		default:
			return w, errno
		}
	}
	return w, nil
}

// timerHeap holds the streams of a loop that can time out, by the time
// their check is due (econn.at). Traffic does not move an entry: when it
// is due, the stream's real due time is worked out again.
type timerHeap []*econn

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].tidx, h[j].tidx = i, j
}
func (h *timerHeap) Push(x any) {
	e := x.(*econn)
	e.tidx = len(*h)
	*h = append(*h, e)
}
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.tidx = -1
	return e
}

// schedule puts e in the heap for its due time, or moves its entry
// earlier.
func (l *evLoop) schedule(e *econn) {
	at, _ := e.due()
	switch {
	case at == 0:
	case e.tidx < 0:
		e.at = at
		heap.Push(&l.timers, e)
	case at < e.at:
		e.at = at
		heap.Fix(&l.timers, e.tidx)
	}
}
