package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// group owns the goroutines and the open connections of a Proxy or a Server.
type group struct {
	wg     sync.WaitGroup     // accept loops and connection handlers
	ctx    context.Context    // canceled by forceClose; aborts dials in progress
	cancel context.CancelFunc // cancels ctx
	loops  evLoops            // event loops of the plain TCP streams (evloop_linux.go)

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu; every open client and backend conn
	forced bool                  // guarded by mu; set by forceClose, after which track refuses
}

func newGroup() *group {
	ctx, cancel := context.WithCancel(context.Background())
	return &group{ctx: ctx, cancel: cancel, conns: make(map[net.Conn]struct{})}
}

// track registers c for force-close. It reports false, and the caller must
// close c, once force-close has begun.
func (g *group) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.forced {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *group) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// forceClose closes every tracked conn and cancels dials. It returns how
// many conns were still open.
func (g *group) forceClose() int {
	g.cancel()
	g.mu.Lock()
	g.forced = true
	conns := make([]net.Conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	clear(g.conns)
	g.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	g.loops.abortAll() // the streams on event loops no longer have their net.Conns
	return len(conns)
}

// drain waits, after the caller closed every listener, for the group's
// goroutines to exit on their own for up to timeout or until ctx ends,
// force-closes what is left, and then waits for the rest. It returns
// ctx's error wrapped if ctx ended first.
func (g *group) drain(ctx context.Context, timeout time.Duration, log *slog.Logger) error {
	done := make(chan struct{})
	// Not in g.wg, since it waits on g.wg; it ends once wg does, and drain
	// does not return before that.
	go func() {
		g.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case <-done:
		g.cancel()
		g.loops.stop()
		return nil
	case <-timer.C:
	case <-ctx.Done():
		err = fmt.Errorf("forward: shutdown: %w", ctx.Err())
	}
	if n := g.forceClose(); n > 0 {
		log.Info("force-closed connections after drain", "conns", n)
	}
	<-done
	g.loops.stop()
	return err
}

// listener is one open socket and its accept loop.
type listener struct {
	ln   net.Listener
	stop chan struct{} // closed by close; wakes an accept loop waiting on sem or backoff
	sem  chan struct{} // one slot per open connection, MaxConns slots
	once sync.Once
	// raw, when set before the accept loop starts, is a second descriptor
	// of ln's socket that the raw accept path waits on; close closes it.
	raw io.Closer
}

func newListener(ln net.Listener, maxConns int) *listener {
	return &listener{ln: ln, stop: make(chan struct{}), sem: make(chan struct{}, maxConns)}
}

// backOff waits d after a failed accept and reports true, or false as
// soon as the listener is closed.
func (l *listener) backOff(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.stop:
		return false
	}
}

// close stops the accept loop. Open connections are not touched. Safe to
// call more than once.
func (l *listener) close() {
	l.once.Do(func() {
		close(l.stop)
		_ = l.ln.Close()
		if l.raw != nil {
			_ = l.raw.Close()
		}
	})
}

// acceptLoop accepts until l is closed and runs handle for each conn in a
// goroutine of g. handle owns the conn, which is already tracked in g: it
// must close and untrack it, and call done once when the connection is
// over, which is after handle returns when an event loop took the stream
// over (evLoops.start).
func acceptLoop(l *listener, g *group, cfg *Config, handle func(c net.Conn, done func())) {
	log := cfg.Logger
	const minBackoff, maxBackoff = 5 * time.Millisecond, time.Second
	var backoff time.Duration
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.stop:
			return
		}
		c, err := l.ln.Accept()
		if err != nil {
			<-l.sem
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			log.Warn("accept failed, backing off", "listen", l.ln.Addr().String(), "backoff", backoff, "err", err)
			if !l.backOff(backoff) {
				return
			}
			continue
		}
		backoff = 0
		if err := cfg.setUserTimeout(c); err != nil {
			log.Warn("set TCP_USER_TIMEOUT on accepted conn", "listen", l.ln.Addr().String(), "err", err)
		}
		if !g.track(c) {
			_ = c.Close()
			<-l.sem
			continue
		}
		g.wg.Add(1) // done by done: the connection, not the goroutine, holds the slot
		go handle(c, func() {
			<-l.sem
			g.wg.Done()
		})
	}
}

// dialLimiter lets through at most one log line per key per interval, so a
// dead backend that every new connection tries does not flood the log.
type dialLimiter struct {
	interval time.Duration

	mu   sync.Mutex
	last map[string]time.Time // guarded by mu; when key was last let through
}

func (d *dialLimiter) allow(key string) bool {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last = make(map[string]time.Time)
	}
	if t, ok := d.last[key]; ok && now.Sub(t) < d.interval {
		return false
	}
	if len(d.last) >= 1024 {
		for k, t := range d.last {
			if now.Sub(t) >= d.interval {
				delete(d.last, k)
			}
		}
	}
	d.last[key] = now
	return true
}

const dialLogInterval = 10 * time.Second

// rawConn returns the socket under c for force-close: Close on a *tls.Conn
// first sends close_notify, which can block for seconds on a stuck peer.
func rawConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// dialBackend connects to b within cfg.DialTimeout, in attempts
// cfg.DialAttempt apart (see connect), adding each attempt after the first
// to retries when it is not nil. For a peer's data port (b.Service != "") it also,
// with cfg.ClientTLS, completes a TLS handshake, then sends the handoff
// header and waits for the reply, so a refused handoff or a failed
// handshake counts as a failed dial; a refused handoff's error wraps a
// *handoffError. That exchange has its own budget, cfg.HandoffTimeout
// from the moment the connection is up, not what is left of DialTimeout:
// under 10 % packet loss, lost SYNs used most of a 3s DialTimeout and a
// lost header or reply segment (TCP resends after 200ms-1s, doubling)
// then ran past it, failing 1-3 of 3,000 connections (issue 10). The conn
// is returned as DialFunc made it, or as the *tls.Conn over it, with
// deadlines cleared.
func dialBackend(ctx context.Context, cfg *Config, b Backend, retries *atomic.Uint64) (_ net.Conn, err error) {
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	var (
		hdr     []byte
		tlsConf *tls.Config
	)
	if b.Service != "" {
		if hdr, err = appendHandoff(nil, b.Service); err != nil {
			return nil, err
		}
		if cfg.ClientTLS != nil {
			// Before dialing: a peer we cannot authenticate is not worth a
			// connection.
			if tlsConf, err = cfg.ClientTLS(b); err != nil {
				return nil, fmt.Errorf("tls to %s: %w", b.Addr, err)
			}
			if tlsConf == nil {
				return nil, fmt.Errorf("tls to %s: ClientTLS returned no config", b.Addr)
			}
		}
	}
	raw, err := connect(dctx, cfg, b.Addr, retries)
	if err != nil {
		return nil, err
	}
	if hdr == nil {
		return raw, nil
	}
	defer func() {
		if err != nil {
			_ = raw.Close() // not through TLS: no close_notify to a failed peer
		}
	}()
	// The handshake and the handoff share one deadline, HandoffTimeout
	// from now; a canceled ctx (force-close) unblocks them too.
	ctx, hcancel := context.WithTimeout(ctx, cfg.HandoffTimeout)
	defer hcancel()
	dl, _ := ctx.Deadline()
	if err := raw.SetDeadline(dl); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c := raw
	if tlsConf != nil {
		tc := tls.Client(sysConnOf(raw), tlsConf)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("tls handshake with %s: %w", b.Addr, err)
		}
		c = tc
	}
	if _, err := c.Write(hdr); err != nil {
		return nil, fmt.Errorf("handoff to %s: %w", b.Addr, err)
	}
	var st [1]byte
	if _, err := io.ReadFull(c, st[:]); err != nil {
		return nil, fmt.Errorf("handoff to %s: %w", b.Addr, err)
	}
	if !stop() {
		return nil, fmt.Errorf("handoff to %s: %w", b.Addr, context.Cause(ctx))
	}
	if handoffStatus(st[0]) != statusOK {
		return nil, fmt.Errorf("handoff to %s: %w", b.Addr, &handoffError{status: handoffStatus(st[0])})
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

// connect dials addr with cfg.DialFunc within ctx. With cfg.DialAttempt >
// 0, while no attempt has connected it starts another one DialAttempt
// after the first, then after twice that gap, and so on, all within ctx,
// and returns the first conn that connects; each attempt after the first
// is added to retries when it is not nil. A lost SYN or SYN-ACK costs TCP
// its 1s initial retransmission timeout; a new attempt sends a new SYN
// much sooner. Earlier attempts keep running, with their own resends,
// rather than being cut: one that connects just as its bound ran out
// would be thrown away, which on a busy host turned successes into
// failures. The first error that is not ctx ending (a refused or
// unreachable address) ends every attempt and is returned at once, so the
// caller moves on to its next backend. connect returns only once every
// attempt has returned, closing the conns that lost the race.
func connect(ctx context.Context, cfg *Config, addr string, retries *atomic.Uint64) (net.Conn, error) {
	return connectFrom(ctx, cfg, addr, retries, nil)
}

// connectFrom is connect with, when first is not nil, an attempt that
// began DialAttempt ago (the event loop's, evaccept_linux.go): first
// waits for it, and the second attempt starts at once.
func connectFrom(ctx context.Context, cfg *Config, addr string, retries *atomic.Uint64, first func(context.Context) (net.Conn, error)) (net.Conn, error) {
	gap := cfg.DialAttempt
	if gap <= 0 {
		if first != nil {
			return first(ctx)
		}
		return cfg.DialFunc(ctx, "tcp", addr)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	// Buffered for every attempt connect may start, so an attempt never
	// blocks on a send connect no longer reads.
	maxAttempts := 1
	if dl, ok := ctx.Deadline(); ok {
		for d, g := gap, gap; d < time.Until(dl) && maxAttempts < 8; d, g = d+2*g, 2*g {
			maxAttempts++
		}
	}
	if first != nil {
		maxAttempts++
	}
	results := make(chan result, maxAttempts)
	started, done := 0, 0
	start := func() {
		started++
		dial := func(ctx context.Context) (net.Conn, error) { return cfg.DialFunc(ctx, "tcp", addr) }
		if first != nil {
			dial, first = first, nil
		}
		go func() {
			c, err := dial(actx)
			results <- result{c, err}
		}()
	}
	// wait collects the attempts still running after cancel and closes
	// the conns of any that connected anyway.
	wait := func() {
		cancel()
		for ; done < started; done++ {
			if r := <-results; r.err == nil {
				_ = r.c.Close()
			}
		}
	}
	next := gap
	if first != nil {
		next = 0 // the first attempt is gap old already
	}
	start()
	timer := time.NewTimer(next)
	defer timer.Stop()
	var lastErr error
	for {
		select {
		case r := <-results:
			done++
			switch {
			case r.err == nil:
				wait()
				return r.c, nil
			case ctx.Err() == nil:
				// Not the deadline: the address refused or is unreachable.
				wait()
				return nil, r.err
			}
			lastErr = r.err
			if done == started {
				return nil, lastErr
			}
		case <-timer.C:
			if started < maxAttempts && ctx.Err() == nil {
				start()
				if retries != nil {
					retries.Add(1)
				}
				gap *= 2
				timer.Reset(gap)
			}
		}
	}
}

// firstDial is how the first backend's dial began before serveFrom: not
// at all (pending < 0, err nil), failed with err, or still connecting on
// the socket pending since start (the raw accept path,
// evaccept_linux.go, which has firstDial.finish).
type firstDial struct {
	err     error
	pending int
	start   time.Time
}

// none reports whether serveFrom dials the first backend itself.
func (f firstDial) none() bool { return f.err == nil && f.pending < 0 }
