package forward

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/listennet"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Backend is one place a Route can send a connection. It is a plain value.
type Backend struct {
	Node string // informational: shown in logs and Status
	Addr string // host:port to dial
	// Service is "" when Addr is the service itself, dialed directly. When
	// non-empty, Addr is a peer ambassador's data port (a Server): the proxy
	// sends a handoff header naming Service and waits for the reply.
	Service svcname.Name
	// Weight is the backend's share of new connections relative to the
	// route's other backends, honoured by the round-robin, random and
	// least-conn policies. 0 (or less) means 1.
	Weight int
	// Priority ranks backends as an SRV record's priority does (RFC 2782):
	// lower first. Balance picks among the backends of the lowest Priority
	// that are not ejected; the others are failover, tried in ascending
	// Priority. Equal for all (0 by default): one rank.
	Priority int
}

// Route maps one local listener to the backends of a service. It is a plain
// value; Update copies it.
//
// Each new connection goes to the backend that Balance picks. A dial that
// fails (refused, reset, no connect within DialTimeout, no handoff reply
// within HandoffTimeout, or a refused handoff) is retried at once on the
// next backend: the other backends that are not ejected, then the ejected
// ones as a last resort, each in ascending Priority. The client's
// connection is closed only when every backend has failed. A failed backend
// is ejected, that is skipped by Balance while another is available, for
// 1s, doubling per consecutive failure up to 30s; a successful dial ends the
// ejection. Ejection and balancing state belong to the listener, keyed by a
// backend's (Addr, Service), and survive Update calls that keep the backend.
type Route struct {
	Service string // name for logs and Status
	Listen  string // host:port of the local listener; the key in Update
	// Backends are the instances of the service. Empty = no listener, so new
	// connections are refused at once. For a duplicate (Addr, Service) the
	// first entry wins.
	Backends []Backend
	// Balance is the policy that spreads new connections over Backends: one
	// of the Balance constants, checked by ValidBalance. "" = least-conn;
	// Update treats an unknown value as "" and logs a Warn.
	Balance string
	// Handshake, when non-nil, runs once per connection after the backend
	// connection is up (dial, TLS and handoff done) and before any byte is
	// copied. It may read from and write to either conn, for example to
	// inject credentials, and returns the conns to copy between: the same
	// ones, or wrappers around them. ctx ends after DialTimeout +
	// HandoffTimeout, or when Shutdown force-closes, and the same deadline
	// is set on both conns for the duration of the call, then cleared.
	//
	// An error (or ctx ending first) closes both conns: it counts as a
	// failed connection (ListenerStatus.HandshakeErrors), not a failed
	// dial, so there is no failover and no ejection, since the backend
	// answered. Handshake is called concurrently from connection
	// goroutines. It owns neither conn: it must not close them, nor keep
	// them after returning. A returned wrapper must close the conn it wraps
	// in Close, and should pass half-close on through CloseWrite() error
	// (and CloseRead() error, when it has one); without CloseWrite, the end
	// of one direction closes the connection both ways. Wrappers are
	// copied through a buffer, not spliced. nil = none.
	Handshake func(ctx context.Context, client, backend net.Conn) (net.Conn, net.Conn, error)
}

// StaticRoute returns a Route that forwards every connection on listen
// directly to target, for a static "ambassador forward LISTEN=TARGET". The
// Service name is target. It is safe for concurrent use.
func StaticRoute(listen, target string) Route {
	return Route{Service: target, Listen: listen, Backends: []Backend{{Addr: target}}}
}

// ListenerStatus is a snapshot of one listener, returned by Proxy.Status.
// Counters are kept per route and start from zero when a route is added
// again after being removed. BytesIn and BytesOut grow while a connection
// runs, after each write to the other side.
type ListenerStatus struct {
	Service  string
	Listen   string
	State    string // "listening" or "error"
	Err      string // why listening failed when State is "error"
	Backends []Backend
	Balance  string // the policy in effect: one of the Balance constants
	// BackendStats has one entry per Backends entry, in the same order.
	BackendStats []BackendStatus

	Accepted   uint64 // connections accepted
	Active     uint64 // connections open now
	DialErrors uint64 // failed backend dials, including refused handoffs
	BytesIn    uint64 // client → backend
	BytesOut   uint64 // backend → client
	// HandshakeErrors counts connections closed because Route.Handshake
	// failed.
	HandshakeErrors uint64
	// HandoffRefused counts the failed dials, part of DialErrors, where a
	// peer's data port answered the handoff with a refusal (unknown
	// service, backend unavailable, bad header); the rest of DialErrors
	// did not get that far: the connect was refused or unreachable, or no
	// connect came within DialTimeout, or no TLS handshake and handoff
	// reply within HandoffTimeout.
	HandoffRefused uint64
	// Retries counts connections moved on to the next backend after a failed
	// dial or refused handoff (one per move; DialErrors counts every failed
	// dial, including the last), and the extra connect attempts to a
	// backend started next to an unanswered one (Config.DialAttempt).
	Retries uint64
	// NoBackend counts connections closed because no backend could be
	// reached: every dial failed.
	NoBackend uint64
	// StreamErrors counts connections cut by a read or write error in the
	// middle of the stream (a reset, a TLS error); both ends were reset.
	StreamErrors uint64
	// IdleTimeouts counts connections closed by Config.IdleTimeout, and
	// HalfCloseTimeouts those closed by Config.HalfCloseTimeout.
	IdleTimeouts      uint64
	HalfCloseTimeouts uint64
}

// BackendStatus is a snapshot of one backend of a listener, part of
// ListenerStatus. Its counters start from zero when the backend is added to
// the route again after being removed.
type BackendStatus struct {
	Backend  Backend
	Active   uint64 // connections open now, or being dialed
	Conns    uint64 // successful dials
	Failures uint64 // failed dials, including refused handoffs
	// Ejected is true while the backend is skipped after a failed dial, until
	// EjectedUntil; EjectedUntil is zero when Ejected is false.
	Ejected      bool
	EjectedUntil time.Time
}

// Listener states in ListenerStatus.State.
const (
	StateListening = "listening"
	StateError     = "error"
)

// Proxy forwards connections from local listeners to backends. All methods
// are safe for concurrent use. Create it with New.
type Proxy struct {
	cfg     Config // read-only after New
	log     *slog.Logger
	g       *group
	dialLog dialLimiter
	now     func() time.Time // time.Now; a seam for ejection tests
	intN    func(n int) int  // rand.IntN; a seam for balancing tests; must be safe for concurrent use
	conns   connTable        // open connections, for Connections

	// updateMu serializes Update and Shutdown, which do socket I/O without
	// holding mu. Lock order: updateMu, then mu, then routeState.mu.
	updateMu sync.Mutex

	mu       sync.Mutex
	routes   map[string]*routeState // guarded by mu; keyed by Route.Listen
	shutdown bool                   // guarded by mu
}

// routeState is the runtime state of one route.
type routeState struct {
	listen string // read-only

	accepted, active, dialErrors atomic.Uint64 // dialErrors: refused handoffs not included
	handoffRefused               atomic.Uint64
	handshakeErrors              atomic.Uint64
	retries, noBackend           atomic.Uint64
	stream                       streamStats      // bytes, stream errors, timeouts
	connect                      connectHistogram // dial plus handoff times (observe.go)

	// Guarded by Proxy.mu.
	ln  *listener // nil while listening fails
	err error     // last listen error while ln is nil

	// mu guards the route and the balancing state. Connection goroutines
	// take it a few times per connection, never across I/O.
	mu       sync.Mutex
	route    *Route          // guarded by mu; swapped by Update, Balance resolved
	backends []*backendState // guarded by mu; one per route.Backends entry, same order
	ranked   bool            // guarded by mu; the backends' Priority is not all one
}

// service returns the route's service name.
func (rs *routeState) service() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.route.Service
}

// New validates cfg and returns a Proxy with no listeners. It starts
// nothing. The error names the bad field and value.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.prepare(); err != nil {
		return nil, err
	}
	return &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		g:       newGroup(),
		dialLog: dialLimiter{interval: dialLogInterval},
		now:     time.Now,
		intN:    rand.IntN,
		routes:  make(map[string]*routeState),
	}, nil
}

// Update makes the set of listeners match routes, keyed by Listen; for a
// duplicate Listen the first route wins. It opens listeners for new routes,
// closes the listeners of removed routes and of routes with no Backends (new
// connections are refused; open ones keep running until they end or
// Shutdown), and swaps backends in place for the rest, keeping the
// balancing and ejection state of each backend the route still lists (by
// Addr and Service). A listen failure is
// not fatal: it shows in Status, is logged once at Warn, and is retried by
// every later Update. Update blocks only for the listen calls, is safe for
// concurrent use, copies routes, and does nothing after Shutdown.
func (p *Proxy) Update(routes []Route) {
	p.updateMu.Lock()
	defer p.updateMu.Unlock()

	p.mu.Lock()
	if p.shutdown {
		p.mu.Unlock()
		return
	}
	want := make(map[string]*Route, len(routes))
	seen := make(map[string]bool, len(routes))
	var badBalance []error // logged once the lock is released
	for _, r := range routes {
		if seen[r.Listen] {
			continue
		}
		seen[r.Listen] = true
		if len(r.Backends) > 0 {
			r.Backends = dedupeBackends(r.Backends)
			if err := ValidBalance(r.Balance); err != nil {
				badBalance = append(badBalance, fmt.Errorf("forward: route for service %q on %s: %w", r.Service, r.Listen, err))
				r.Balance = ""
			}
			if r.Balance == "" {
				r.Balance = BalanceLeastConn
			}
			want[r.Listen] = &r
		}
	}
	var closing []*listener
	for key, rs := range p.routes {
		if _, ok := want[key]; !ok {
			if rs.ln != nil {
				closing = append(closing, rs.ln)
			}
			delete(p.routes, key)
		}
	}
	// New routes enter p.routes only once their first listen attempt is
	// done, so Status never shows a state that is neither.
	var opening []*routeState
	for key, r := range want {
		rs := p.routes[key]
		if rs == nil {
			rs = &routeState{listen: key}
		}
		rs.setRoute(r)
		if rs.ln == nil {
			opening = append(opening, rs)
		}
	}
	p.mu.Unlock()

	for _, err := range badBalance {
		// Rate-limited like dial failures: mesh calls Update on every
		// catalog change.
		if p.dialLog.allow("balance\x00" + err.Error()) {
			p.log.Warn("unknown balance policy, using least-conn", "err", err)
		}
	}
	for _, l := range closing {
		l.close()
		p.log.Info("stopped listening", "listen", l.ln.Addr().String())
	}
	for _, rs := range opening {
		p.listen(rs)
	}
}

// listen opens rs's listener, starts its accept loop and puts rs in
// p.routes. The caller holds updateMu, so p is not shut down.
func (p *Proxy) listen(rs *routeState) {
	service := rs.service()
	var ln net.Listener
	// An empty or zero port would listen on a random port that no client
	// can find.
	_, port, err := net.SplitHostPort(rs.listen)
	if err == nil && (port == "" || port == "0") {
		err = errors.New("port must be set and not 0")
	}
	if err != nil {
		err = fmt.Errorf("forward: route for service %q: Listen %q: %w", service, rs.listen, err)
	} else if ln, err = p.cfg.ListenFunc(p.g.ctx, listennet.Network("tcp", rs.listen), rs.listen); err != nil {
		err = fmt.Errorf("forward: listen for service %q: %w", service, err)
	}
	if err != nil {
		p.mu.Lock()
		first := rs.err == nil
		rs.err = err
		p.routes[rs.listen] = rs
		p.mu.Unlock()
		if first {
			p.log.Warn("listen failed, will retry on the next update", "service", service, "listen", rs.listen, "err", err)
		}
		return
	}
	l := newListener(ln, p.cfg.MaxConns)
	p.mu.Lock()
	rs.ln, rs.err = l, nil
	p.routes[rs.listen] = rs
	p.mu.Unlock()
	p.log.Info("listening", "service", service, "listen", ln.Addr().String())
	if p.rawAccept(rs, l) {
		return // accepts into the event loops (evaccept_linux.go)
	}
	p.g.wg.Go(func() {
		acceptLoop(l, p.g, &p.cfg, func(c net.Conn, done func()) { p.serveConn(rs, c, done) })
	})
}

// serveConn connects client c to a backend, failing over as Route
// describes, and copies until both directions end. It owns c, and calls
// done when the connection is over.
func (p *Proxy) serveConn(rs *routeState, c net.Conn, done func()) {
	start := time.Now()
	rs.accepted.Add(1)
	rs.active.Add(1)
	r, order := rs.plan(p.now(), p.intN)
	p.serveFrom(rs, c, done, start, r, order, firstDial{pending: -1})
}

// serveFrom is serveConn once the backends are planned: it dials order,
// the first backend as first says (the raw accept path may have begun
// that dial), and copies.
func (p *Proxy) serveFrom(rs *routeState, c net.Conn, done func(), start time.Time, r *Route, order []attempt, first firstDial) {
	// closeClient ends the connection: when serveConn returns or, when an
	// event loop took the stream over, when the stream ends.
	closeClient := func() {
		_ = c.Close()
		p.g.untrack(c)
		rs.active.Add(^uint64(0))
		done()
	}
	detached := false
	defer func() {
		if !detached {
			closeClient()
		}
	}()

	for i, a := range order {
		if i > 0 {
			rs.retries.Add(1)
			rs.begin(a.bs)
		}
		dialStart := time.Now()
		var (
			bc  net.Conn
			err error
		)
		if i == 0 && !first.none() {
			dialStart = first.start
			bc, err = first.finish(p.g.ctx, &p.cfg, a.b.Addr, &rs.retries)
		} else {
			bc, err = dialBackend(p.g.ctx, &p.cfg, a.b, &rs.retries)
		}
		if err != nil {
			if p.g.ctx.Err() != nil {
				rs.release(a.bs)
				return // force-closed by Shutdown
			}
			backoff := rs.failed(a.bs, p.now())
			if he := (*handoffError)(nil); errors.As(err, &he) {
				rs.handoffRefused.Add(1)
			} else {
				rs.dialErrors.Add(1)
			}
			if p.dialLog.allow(a.b.Node + "\x00" + a.b.Addr + "\x00" + a.b.Service.String()) {
				p.log.Warn("backend dial failed, trying the next",
					"service", r.Service, "listen", rs.listen, "peer", a.b.Node, "backend", a.b.Addr, "ejected_for", backoff,
					"err", fmt.Errorf("forward: dial backend for service %q on node %s: %w", r.Service, a.b.Node, err))
			}
			continue
		}
		rs.connected(a.bs)
		rs.connect.observe(time.Since(dialStart))
		// Tracked by its socket: force-close must not wait on TLS.
		braw := rawConn(bc)
		if !p.g.track(braw) {
			_ = braw.Close()
			rs.release(a.bs)
			return
		}
		client, backend := net.Conn(c), bc
		if r.Handshake != nil {
			client, backend, err = p.handshake(r.Handshake, c, bc)
			if err != nil {
				_ = braw.Close()
				p.g.untrack(braw)
				rs.release(a.bs)
				rs.handshakeErrors.Add(1)
				if p.g.ctx.Err() == nil && p.dialLog.allow("handshake\x00"+a.b.Node+"\x00"+a.b.Addr+"\x00"+a.b.Service.String()) {
					p.log.Warn("connection handshake failed", "service", r.Service, "listen", rs.listen, "peer", a.b.Node, "backend", a.b.Addr,
						"err", fmt.Errorf("forward: handshake for service %q on node %s: %w", r.Service, a.b.Node, err))
				}
				return
			}
		}
		cs := &connState{service: r.Service, listen: rs.listen, backend: a.b.Addr, client: remoteAddr(c), since: start}
		p.conns.add(cs)
		finish := func(in, out int64, end endReason, err error) {
			p.conns.remove(cs)
			_ = braw.Close() // in case a Handshake wrapper did not close it
			p.g.untrack(braw)
			rs.release(a.bs)
			p.logClosed(r, rs, a, start, in, out, end, err)
		}
		o := copyOpts{cfg: &p.cfg, stats: &rs.stream, cs: cs, rawClient: c, rawBackend: braw}
		if p.g.loops.start(client, backend, o, func(in, out int64, end endReason, err error) {
			finish(in, out, end, err)
			closeClient()
		}) {
			detached = true // this goroutine ends; the loop runs the stream
			return
		}
		finish(proxyCopy(client, backend, o))
		return
	}
	rs.noBackend.Add(1)
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("connection closed, no backend available", "service", r.Service, "listen", rs.listen,
			"backends", len(order), "duration", time.Since(start))
	}
}

// handshake runs h on client and backend with the deadline Route.Handshake
// describes and returns the conns to copy between.
func (p *Proxy) handshake(h func(ctx context.Context, client, backend net.Conn) (net.Conn, net.Conn, error),
	client, backend net.Conn) (net.Conn, net.Conn, error) {
	ctx, cancel := context.WithTimeout(p.g.ctx, p.cfg.DialTimeout+p.cfg.HandoffTimeout)
	defer cancel()
	dl, _ := ctx.Deadline()
	_ = client.SetDeadline(dl)
	_ = backend.SetDeadline(dl)
	// Cancellation (force-close) unblocks I/O in h at once.
	stop := context.AfterFunc(ctx, func() {
		_ = client.SetDeadline(time.Unix(1, 0))
		_ = backend.SetDeadline(time.Unix(1, 0))
	})
	cc, bc, err := h(ctx, client, backend)
	if !stop() && err == nil {
		// ctx ended while h ran: the deadlines are (being) set in the past,
		// so the conns cannot be used as they are. Wrappers h returned may
		// own goroutines: close them so those end too.
		err = context.Cause(ctx)
		for _, w := range []net.Conn{cc, bc} {
			if w != nil && w != client && w != backend {
				_ = w.Close()
			}
		}
	}
	if err == nil && (cc == nil || bc == nil) {
		err = errors.New("handshake returned a nil conn")
	}
	if err != nil {
		return nil, nil, err
	}
	_ = client.SetDeadline(time.Time{})
	_ = backend.SetDeadline(time.Time{})
	return cc, bc, nil
}

// Status returns a snapshot of every listener, sorted by Listen. Routes
// without Backends have no listener and are not listed. It is safe for
// concurrent use, does not block on I/O, and the caller owns the result.
func (p *Proxy) Status() []ListenerStatus {
	now := p.now()
	p.mu.Lock()
	out := make([]ListenerStatus, 0, len(p.routes))
	for _, rs := range p.routes {
		r, stats := rs.snapshot(now)
		refused := rs.handoffRefused.Load() // read once: DialErrors includes it
		st := ListenerStatus{
			Service:      r.Service,
			Listen:       rs.listen,
			State:        StateListening,
			Backends:     slices.Clone(r.Backends),
			Balance:      r.Balance,
			BackendStats: stats,
			Accepted:     rs.accepted.Load(),
			Active:       rs.active.Load(),
			DialErrors:   rs.dialErrors.Load() + refused,
			BytesIn:      rs.stream.bytesIn.Load(),
			BytesOut:     rs.stream.bytesOut.Load(),

			HandshakeErrors:   rs.handshakeErrors.Load(),
			HandoffRefused:    refused,
			Retries:           rs.retries.Load(),
			NoBackend:         rs.noBackend.Load(),
			StreamErrors:      rs.stream.streamErrors.Load(),
			IdleTimeouts:      rs.stream.idleTimeouts.Load(),
			HalfCloseTimeouts: rs.stream.halfCloseTimeouts.Load(),
		}
		if rs.ln == nil {
			st.State = StateError
			if rs.err != nil {
				st.Err = rs.err.Error()
			}
		}
		out = append(out, st)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b ListenerStatus) int { return cmp.Compare(a.Listen, b.Listen) })
	return out
}

// Connections returns the connections open now, through every listener,
// oldest first: those whose backend is connected and copying (not those
// still dialing). Safe for concurrent use; the caller owns the result.
func (p *Proxy) Connections() []ConnStatus { return p.conns.snapshot() }

// Shutdown stops accepting on every listener, waits for open connections to
// end for up to DrainTimeout or until ctx ends, force-closes the rest, and
// returns once every goroutine of p has exited. It returns ctx's error
// (wrapped) if ctx ended before the drain did. Safe to call more than once
// and concurrently: later calls return at once with an error matching
// net.ErrClosed.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.updateMu.Lock()
	p.mu.Lock()
	if p.shutdown {
		p.mu.Unlock()
		p.updateMu.Unlock()
		return fmt.Errorf("forward: proxy shutdown: %w", net.ErrClosed)
	}
	p.shutdown = true
	var lns []*listener
	for _, rs := range p.routes {
		if rs.ln != nil {
			lns = append(lns, rs.ln)
		}
	}
	clear(p.routes) // Status lists nothing once shut down
	p.mu.Unlock()
	for _, l := range lns {
		l.close()
	}
	p.updateMu.Unlock()

	err := p.g.drain(ctx, p.cfg.DrainTimeout, p.log)
	p.log.Info("proxy stopped", "listeners", len(lns))
	return err
}

// remoteAddr is c's peer address, or "" when it has none: a conn made from
// an accepted descriptor (net.FileConn) whose peer already reset has no
// remote address, where Go's Accept would have had one from accept itself.
func remoteAddr(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// logClosed logs the end of a forwarded connection at debug level.
func (p *Proxy) logClosed(r *Route, rs *routeState, a attempt, start time.Time, in, out int64, end endReason, err error) {
	if !p.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []any{"service", r.Service, "listen", rs.listen, "peer", a.b.Node,
		"backend", a.b.Addr, "bytes_in", in, "bytes_out", out, "duration", time.Since(start), "end", end.String()}
	if err != nil {
		attrs = append(attrs, "err", fmt.Errorf("forward: copy for service %q on node %s: %w", r.Service, a.b.Node, err))
	}
	p.log.Debug("connection closed", attrs...)
}
