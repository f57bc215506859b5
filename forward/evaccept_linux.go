//go:build linux

package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The raw accept path: a Proxy listener whose connections can go straight
// to an event loop never makes a net.Conn of them. Its one accept
// goroutine takes sockets with accept4(2) as plain descriptors, draining
// the backlog before it waits again (in Go's poller, on the listening
// socket only), and for each:
//   - plans the backends (rs.plan) as serveConn does;
//   - when the first choice is the service itself at an IP address and the
//     route has no Handshake, opens a non-blocking socket, starts its
//     connect and gives both descriptors to a loop (loopDial). The loop
//     holds the client's bytes in its socket until the connect is done,
//     then runs the stream as any other (evloop_linux.go);
//   - otherwise, or when that connect fails or has gone unanswered for
//     DialAttempt, the connection goes on in a goroutine as a net.Conn:
//     serveFrom, with the failed first attempt counted as serveConn
//     counts one, or with the still-connecting socket as its first
//     attempt, so that every later attempt, the failover to the next
//     backend, the counters and the logs are serveConn's.
//
// Compared with the goroutine path (accept, dial, then evLoops.start)
// this saves per connection a goroutine, two net.Conns, their poller
// registrations (epoll_ctl add and delete), getsockname, getpeername, two
// dups and two closes, and the setsockopt calls the listener's sockets
// inherit (TCP_NODELAY, keepalive, and TCP_USER_TIMEOUT where the kernel
// copies it).

// rawAccept starts rs's accept goroutine on the raw path and reports
// whether it did; on false the caller runs acceptLoop. The raw path needs
// the event loop, the default listener and the default dialer (the test
// seams see net.Conns).
//
// It is chosen once per listener, when the route is plain: no Handshake
// and every backend the service itself at an IP address. A route to
// peers' data ports (the mesh's) keeps acceptLoop, since each of its
// connections would become a net.Conn anyway and making one from a
// descriptor costs more than Go's accept. A route that changes kind later
// stays correct either way: serveRaw hands what it cannot dial to
// serveFD, and acceptLoop's connections reach a loop through
// evLoops.start.
func (p *Proxy) rawAccept(rs *routeState, l *listener) bool {
	if !loopMode || !p.cfg.defaultDial || !rs.plain() {
		return false
	}
	tl, ok := l.ln.(*net.TCPListener)
	if !ok {
		return false
	}
	// A listener's RawConn cannot wait (its Read is EINVAL): wait on a
	// copy of the socket as a pollable *os.File instead.
	lrc, err := tl.SyscallConn()
	if err != nil {
		return false
	}
	nfd := -1
	if err := lrc.Control(func(fd uintptr) { nfd, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || nfd < 0 {
		return false
	}
	f := os.NewFile(uintptr(nfd), "listener") // non-blocking: in Go's poller
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return false
	}
	l.raw = f
	p.g.wg.Go(func() { p.acceptRaw(rs, l, rc) })
	return true
}

// plain reports whether the route has no Handshake and all its backends
// are services at an IP address: the raw path can dial every one.
func (rs *routeState) plain() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.route == nil || rs.route.Handshake != nil {
		return false
	}
	for _, b := range rs.route.Backends {
		if b.Service != "" || sockaddrOf(b.Addr) == nil {
			return false
		}
	}
	return true
}

// acceptRaw accepts on l until it is closed, as acceptLoop does, but
// takes each socket as a descriptor and serves it with serveRaw.
func (p *Proxy) acceptRaw(rs *routeState, l *listener, rc syscall.RawConn) {
	const minBackoff, maxBackoff = 5 * time.Millisecond, time.Second
	var (
		backoff  time.Duration
		fd       int
		sa       netip.AddrPort
		aerr     error
		inherits = -1 // whether accepted sockets inherit TCP_USER_TIMEOUT: -1 = not known yet
	)
	// Called first without waiting, so the backlog is drained with one
	// accept4 per connection; only EAGAIN waits for the listener.
	accept := func(lfd uintptr) bool {
		for {
			fd, sa, aerr = accept4(int(lfd))
			switch aerr {
			case unix.EINTR, unix.ECONNABORTED: // as net's accept: try again
			case unix.EAGAIN:
				return false
			default:
				return true
			}
		}
	}
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.stop:
			return
		}
		err := rc.Read(accept)
		if err == nil {
			err = aerr
		}
		if err != nil {
			<-l.sem
			select {
			case <-l.stop:
				return // l.raw closed by l.close
			default:
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			p.log.Warn("accept failed, backing off", "listen", l.ln.Addr().String(), "backoff", backoff,
				"err", os.NewSyscallError("accept4", err))
			if !l.backOff(backoff) {
				return
			}
			continue
		}
		backoff = 0
		if p.cfg.UserTimeout > 0 && inherits != 1 {
			// Linux copies the listener's TCP_USER_TIMEOUT to the sockets
			// it accepts on recent kernels, not on old ones: look once.
			if inherits < 0 {
				inherits = 0
				if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); err == nil && v == int(p.cfg.UserTimeout.Milliseconds()) {
					inherits = 1
				}
			}
			if inherits == 0 {
				if err := setUserTimeoutFD(uintptr(fd), p.cfg.UserTimeout); err != nil {
					p.log.Warn("set TCP_USER_TIMEOUT on accepted conn", "listen", l.ln.Addr().String(), "err", err)
				}
			}
		}
		p.g.wg.Add(1) // done by done: the connection holds the slot, as in acceptLoop
		p.serveRaw(rs, fd, sa, func() {
			<-l.sem
			p.g.wg.Done()
		})
	}
}

// serveRaw serves the accepted socket cfd from the accept goroutine: the
// first dial is started here and finished by a loop, or the connection
// goes to a goroutine (serveFrom). It owns cfd, and calls done when the
// connection is over.
func (p *Proxy) serveRaw(rs *routeState, cfd int, csa netip.AddrPort, done func()) {
	start := time.Now()
	rs.accepted.Add(1)
	rs.active.Add(1)
	r, order := rs.plan(p.now(), p.intN)
	var bsa unix.Sockaddr
	if len(order) > 0 && r.Handshake == nil && order[0].b.Service == "" {
		bsa = sockaddrOf(order[0].b.Addr)
	}
	if bsa == nil {
		p.serveFD(rs, cfd, done, start, r, order, firstDial{pending: -1})
		return
	}
	a := order[0]
	bfd, err := p.cfg.connectFD(bsa)
	if err != nil {
		// Refused at once (unreachable, out of descriptors): a failed
		// dial of the first backend, as serveConn counts it.
		p.serveFD(rs, cfd, done, start, r, order, firstDial{err: &net.OpError{Op: "dial", Net: "tcp", Addr: tcpAddr(a.b.Addr), Err: err}, pending: -1})
		return
	}
	// closeClient ends the connection; the loop closed both sockets.
	closeClient := func() {
		rs.active.Add(^uint64(0))
		done()
	}
	var cs *connState // set by connected, on the loop's goroutine, as then
	e := &econn{fd: [2]int{cfd, bfd}, stats: &rs.stream, tidx: -1,
		idle: int64(p.cfg.IdleTimeout), halfClose: int64(p.cfg.HalfCloseTimeout)}
	e.last = start.UnixNano()
	wait, handOver := p.cfg.DialAttempt, true
	if wait <= 0 || wait >= p.cfg.DialTimeout {
		wait, handOver = p.cfg.DialTimeout, false
	}
	e.dial = &loopDial{
		at:       start.Add(wait).UnixNano(),
		handOver: handOver,
		connected: func() *connState {
			rs.connected(a.bs)
			rs.connect.observe(time.Since(start))
			cs = &connState{service: r.Service, listen: rs.listen, backend: a.b.Addr, client: csa.String(), since: start}
			p.conns.add(cs)
			if testHookCopy != nil || testHookRead != nil {
				hookFDs(cfd, bfd)
			}
			return cs
		},
		failed: func(cfd, bfd int, err error) {
			first := firstDial{err: err, pending: -1, start: start}
			if bfd >= 0 {
				first = firstDial{pending: bfd, start: start}
			}
			p.serveFD(rs, cfd, done, start, r, order, first)
		},
	}
	e.then = func(in, out int64, end endReason, err error) {
		if cs == nil {
			// Ended while connecting: a force-close, or the client reset,
			// which the loop counted as a stream error and so is logged as
			// one; a force-closed dial is not, as on the goroutine path.
			rs.release(a.bs)
			if end != endClosed {
				p.logClosed(r, rs, a, start, in, out, end, err)
			}
			closeClient()
			return
		}
		p.conns.remove(cs)
		rs.release(a.bs)
		p.logClosed(r, rs, a, start, in, out, end, err)
		closeClient()
	}
	if l := p.g.loops.pick(); l != nil && l.add(e) {
		return
	}
	if p.g.ctx.Err() == nil {
		// No event loop though the Proxy runs (none could start: out of
		// descriptors, say): the goroutine path, with the connect in
		// progress as its first attempt, as the loop hands one over.
		p.serveFD(rs, cfd, done, start, r, order, firstDial{pending: bfd, start: start})
		return
	}
	// Shut down under us: as a force-closed dial.
	resetFD(cfd)
	sysClose(bfd)
	rs.release(a.bs)
	closeClient()
}

// serveFD goes on with the accepted socket cfd in a goroutine, as a
// net.Conn: serveFrom dials order, starting with first.
func (p *Proxy) serveFD(rs *routeState, cfd int, done func(), start time.Time, r *Route, order []attempt, first firstDial) {
	fail := func() {
		if first.pending >= 0 {
			_ = unix.Close(first.pending)
		}
		if len(order) > 0 {
			rs.release(order[0].bs)
		}
		rs.active.Add(^uint64(0))
		done()
	}
	c, err := p.cfg.fdConn(cfd)
	if err != nil {
		p.log.Warn("accepted conn", "listen", rs.listen, "err", fmt.Errorf("forward: accepted socket: %w", err))
		fail()
		return
	}
	if !p.g.track(c) {
		_ = c.Close()
		fail()
		return
	}
	go p.serveFrom(rs, c, done, start, r, order, first) // in g.wg through the connection's slot
}

// finish completes the first backend's dial to addr: err as it is, or
// the pending connect as the first attempt of connect, within
// DialTimeout from start.
func (f firstDial) finish(ctx context.Context, cfg *Config, addr string, retries *atomic.Uint64) (net.Conn, error) {
	if f.err != nil {
		return nil, f.err
	}
	ctx, cancel := context.WithDeadline(ctx, f.start.Add(cfg.DialTimeout))
	defer cancel()
	pc, err := cfg.fdConn(f.pending)
	if err != nil {
		return nil, err
	}
	return connectFrom(ctx, cfg, addr, retries, func(ctx context.Context) (net.Conn, error) {
		return waitConnect(ctx, pc.(*net.TCPConn), addr)
	})
}

// fdConn returns the socket fd as a net.Conn, in Go's poller, and closes
// fd (the conn has a copy). net.FileConn sets its own keepalive (15s) on
// the socket: cfg's is set again.
func (c *Config) fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	conn, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("forward: socket %d is not TCP", fd)
	}
	if c.KeepAlive < 0 {
		err = tc.SetKeepAlive(false)
	} else if rc, rerr := tc.SyscallConn(); rerr != nil {
		err = rerr
	} else {
		err = c.controlKeepAlive("tcp", "", rc)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// waitConnect waits, within ctx, for c's connect, started elsewhere, to
// finish. It closes c unless it connected.
func waitConnect(ctx context.Context, c *net.TCPConn, addr string) (net.Conn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var cerr error
	err = rc.Write(func(fd uintptr) bool {
		serr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
		case serr != 0:
			cerr = unix.Errno(serr)
		default:
			if _, err := unix.Getpeername(int(fd)); err == unix.ENOTCONN {
				return false // still connecting: wait for the socket to be writable
			}
		}
		return true
	})
	if err == nil && cerr != nil {
		err = os.NewSyscallError("connect", cerr)
	}
	if err == nil && stop() {
		_ = c.SetWriteDeadline(time.Time{})
		return c, nil
	}
	_ = c.Close()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		err = context.Cause(ctx)
	}
	return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: tcpAddr(addr), Err: err}
}

func tcpAddr(addr string) net.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// connectFD opens a non-blocking socket with the dialer's options and
// starts its connect to sa.
func (c *Config) connectFD(sa unix.Sockaddr) (int, error) {
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := sysSocket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := c.setDialOpts(fd); err != nil {
		sysClose(fd)
		return -1, err
	}
	if err := sysConnect(fd, sa); err != nil && err != unix.EINPROGRESS {
		sysClose(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// setDialOpts sets on a socket to be connected what the dialer's Control
// and net set on a dialed conn: keepalive, TCP_USER_TIMEOUT, TCP_NODELAY.
func (c *Config) setDialOpts(fd int) error {
	opts := make([]struct{ level, opt, v int }, 0, 6)
	opts = append(opts, struct{ level, opt, v int }{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1})
	if c.KeepAlive > 0 {
		secs := max(int(c.KeepAlive.Seconds()), 1)
		opts = append(opts, struct{ level, opt, v int }{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			struct{ level, opt, v int }{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs},
			struct{ level, opt, v int }{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs})
		if keepAliveProbes() != 9 {
			opts = append(opts, struct{ level, opt, v int }{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9})
		}
	}
	if c.UserTimeout > 0 {
		opts = append(opts, struct{ level, opt, v int }{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(c.UserTimeout.Milliseconds())})
	}
	for _, o := range opts {
		if err := sysSetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return fmt.Errorf("forward: set socket option %d: %w", o.opt, os.NewSyscallError("setsockopt", err))
		}
	}
	return nil
}

// keepAliveProbes is the system's TCP keepalive probe count, which a
// socket gets unless it sets TCP_KEEPCNT; 0 when it cannot be read.
var keepAliveProbes = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_keepalive_probes")
	if err != nil {
		return 0
	}
	n := 0
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
})

// sockaddrOf returns addr ("ip:port", no zone) as a socket address, or
// nil when it is not one (a host name: net resolves it).
func sockaddrOf(addr string) unix.Sockaddr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr().Zone() != "" {
		return nil
	}
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// accept4 takes a connection from the listening socket lfd as a
// non-blocking descriptor, with the peer's address. x/sys's Accept4
// spends a getsockopt per call on the address's protocol; this reads the
// address itself. A raw syscall: the listener is non-blocking.
func accept4(lfd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	l := uint32(unix.SizeofSockaddrAny)
	fd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	var ap netip.AddrPort
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), portOf(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), portOf(sa.Port))
	}
	return int(fd), ap, nil
}

// portOf turns a port as the kernel stores it (network byte order) into
// a number.
func portOf(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// hookFDs calls the tests' copy hooks for a stream the loop dialed, with
// net.Conns on copies of its sockets. net.FileConn sets keepalive on the
// socket: the options are read first and put back, so the hooks see what
// the loop's socket had.
func hookFDs(cfd, bfd int) {
	keep := []struct{ level, opt int }{{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT}}
	conn := func(fd int) net.Conn {
		var was [4]int
		for i, o := range keep {
			was[i], _ = unix.GetsockoptInt(fd, o.level, o.opt)
		}
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		f := os.NewFile(uintptr(nfd), "")
		c, _ := net.FileConn(f)
		_ = f.Close()
		for i, o := range keep {
			if was[i] > 0 || o.opt == unix.SO_KEEPALIVE {
				_ = unix.SetsockoptInt(fd, o.level, o.opt, was[i])
			}
		}
		return c
	}
	cc, bc := conn(cfd), conn(bfd)
	for _, c := range []net.Conn{cc, bc} {
		if c != nil {
			defer c.Close()
		}
	}
	if cc == nil || bc == nil {
		return
	}
	if h := testHookCopy; h != nil {
		h(bc, cc)
		h(cc, bc)
	}
	if h := testHookRead; h != nil {
		h(true)
		h(true)
	}
}
