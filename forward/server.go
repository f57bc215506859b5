package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/listennet"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Server is the data-port side of a handoff: it accepts connections from
// peer ambassadors, reads the handoff header, and connects each to the local
// service it names. All methods are safe for concurrent use. Create it with
// NewServer.
type Server struct {
	cfg     Config // read-only after NewServer
	log     *slog.Logger
	lookup  func(service svcname.Name) (targets []string, ok bool)
	g       *group
	dialLog dialLimiter

	accepted, active                 atomic.Uint64
	handoffs                         [4]atomic.Uint64  // by handoffStatus: ok, unknown, unavailable, bad header
	handoffIncomplete, tlsHandshakes atomic.Uint64     // no status sent; tlsHandshakes counts failed ones
	stream                           streamStats       // totals over every service
	handoffsBy                       handoffsByService // ok and unavailable per service (observe.go)

	statsMu   sync.Mutex
	byService map[string]*streamStats // guarded by statsMu; services that got "ok", parent &stream

	mu       sync.Mutex
	ln       *listener // guarded by mu; nil until Start has listened
	starting bool      // guarded by mu; Start was called
	shutdown bool      // guarded by mu
}

// NewServer validates cfg and returns a Server that is not listening yet.
// lookup maps a service name from a handoff header to the host:port targets
// to dial, such as the records of a DNS SRV lookup. The Server tries them in
// the order given (the caller orders them), failing over at once to the
// next when a dial fails, each within an even share of DialTimeout, and
// refuses the handoff only when all fail or there are none. lookup must
// only know services this node announces: the Server never dials an address
// named by the caller, so it is not an open relay. lookup is called
// concurrently from connection goroutines and must not block; the Server
// does not modify or keep the slice.
func NewServer(cfg Config, lookup func(service svcname.Name) (targets []string, ok bool)) (*Server, error) {
	if lookup == nil {
		return nil, errors.New("forward: server: lookup must not be nil")
	}
	if err := cfg.prepare(); err != nil {
		return nil, err
	}
	return &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		lookup:  lookup,
		g:       newGroup(),
		dialLog: dialLimiter{interval: dialLogInterval},
	}, nil
}

// Start listens on addr (host:port; port 0 picks one, see Addr) and starts
// the accept loop in the background. ctx bounds only the listen call; stop
// the Server with Shutdown. Start may be called once; it fails after
// Shutdown with an error matching net.ErrClosed.
func (s *Server) Start(ctx context.Context, addr string) error {
	s.mu.Lock()
	switch {
	case s.shutdown:
		s.mu.Unlock()
		return fmt.Errorf("forward: start data port %s: %w", addr, net.ErrClosed)
	case s.starting:
		s.mu.Unlock()
		return fmt.Errorf("forward: start data port %s: already started", addr)
	}
	s.starting = true
	s.mu.Unlock()

	ln, err := s.cfg.ListenFunc(ctx, listennet.Network("tcp", addr), addr)
	if err != nil {
		return fmt.Errorf("forward: data port: %w", err)
	}
	l := newListener(ln, s.cfg.MaxConns)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		// Shutdown ran during the listen and is already waiting on s.g.wg,
		// so no goroutine may be added now.
		_ = ln.Close()
		return fmt.Errorf("forward: start data port %s: %w", addr, net.ErrClosed)
	}
	s.ln = l
	s.g.wg.Go(func() { acceptLoop(l, s.g, &s.cfg, s.serveConn) })
	s.log.Info("data port listening", "listen", ln.Addr().String())
	return nil
}

// Addr returns the listening address, or nil before Start. Safe for
// concurrent use.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.ln.Addr()
}

// serveConn runs one handoff and then copies until both directions end. It
// owns raw, the accepted conn, which is tracked in s.g, and calls done when
// the connection is over.
func (s *Server) serveConn(raw net.Conn, done func()) {
	start := time.Now()
	s.accepted.Add(1)
	s.active.Add(1)
	// closeRaw ends the connection: when serveConn returns or, when an
	// event loop took the stream over, when the stream ends.
	closeRaw := func() {
		_ = raw.Close()
		s.g.untrack(raw)
		s.active.Add(^uint64(0))
		done()
	}
	detached := false
	defer func() {
		if !detached {
			closeRaw()
		}
	}()

	// One deadline covers the TLS handshake, reading the header, dialing
	// and writing the reply. Deadlines are set on raw, under any TLS.
	_ = raw.SetDeadline(start.Add(s.cfg.HandoffTimeout))
	c := raw // what the handoff and the copy use: raw, or TLS over it
	if s.cfg.ServerTLS != nil {
		tc := tls.Server(sysConnOf(raw), s.cfg.ServerTLS)
		if err := tc.Handshake(); err != nil {
			// Not one byte in plaintext: Go's TLS stack sends nothing to a
			// client that does not speak TLS, and alerts to one that does.
			s.tlsHandshakes.Add(1)
			s.logHandshakeFailed(raw, err)
			return
		}
		c = tc
		// Closed before raw (deferred above): a close_notify if the copy
		// did not send one, bounded by tls's own 5s write deadline. Not
		// when an event loop took the stream over: then the TLS conn is
		// the loop's.
		defer func() {
			if !detached {
				_ = c.Close()
			}
		}()
	}
	name, err := readHandoff(c)
	if err != nil {
		st := "none"
		if errors.Is(err, errBadHeader) {
			s.handoffs[statusBadHeader].Add(1)
			_, _ = c.Write([]byte{byte(statusBadHeader)})
			st = statusBadHeader.String()
		} else {
			s.handoffIncomplete.Add(1)
		}
		s.logRefused(c, "", st, err)
		return
	}
	// Names compare case-insensitively, and so does lookup: the per-service
	// counters (and the metric series built from them) are keyed by the
	// lower-case name, or every spelling a peer sends would be one more.
	service := name.Lower().String()
	targets, ok := s.lookup(name)
	if !ok {
		s.handoffs[statusUnknown].Add(1)
		_, _ = c.Write([]byte{byte(statusUnknown)})
		s.logRefused(c, service, statusUnknown.String(), nil)
		return
	}
	bc, target := s.dialTargets(service, targets)
	if bc == nil {
		s.handoffs[statusUnavailable].Add(1)
		s.handoffsBy.add(service, false)
		_, _ = c.Write([]byte{byte(statusUnavailable)})
		s.logRefused(c, service, statusUnavailable.String(), nil)
		return
	}
	if !s.g.track(bc) {
		_ = bc.Close()
		return
	}
	if _, err := c.Write([]byte{byte(statusOK)}); err != nil {
		_ = bc.Close()
		s.g.untrack(bc)
		s.logRefused(c, service, statusOK.String(), err)
		return
	}
	s.handoffs[statusOK].Add(1)
	s.handoffsBy.add(service, true)
	_ = raw.SetDeadline(time.Time{})
	peer := c.RemoteAddr().String()
	finish := func(in, out int64, end endReason, err error) {
		s.g.untrack(bc)
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			attrs := []any{"service", service, "peer", peer, "backend", target,
				"bytes_in", in, "bytes_out", out, "duration", time.Since(start), "end", end.String()}
			if err != nil {
				attrs = append(attrs, "err", fmt.Errorf("forward: copy for service %q: %w", service, err))
			}
			s.log.Debug("connection closed", attrs...)
		}
	}
	o := copyOpts{cfg: &s.cfg, stats: s.serviceStats(service), rawClient: raw}
	if s.g.loops.start(c, bc, o, func(in, out int64, end endReason, err error) {
		finish(in, out, end, err)
		closeRaw()
	}) {
		detached = true // this goroutine ends; the loop runs the stream
		return
	}
	finish(proxyCopy(c, bc, o))
}

// Stats returns a snapshot of the Server's counters. Safe for concurrent
// use, also before Start and after Shutdown.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Accepted:           s.accepted.Load(),
		Active:             s.active.Load(),
		HandoffOK:          s.handoffs[statusOK].Load(),
		HandoffUnknown:     s.handoffs[statusUnknown].Load(),
		HandoffUnavailable: s.handoffs[statusUnavailable].Load(),
		HandoffBadHeader:   s.handoffs[statusBadHeader].Load(),
		HandoffIncomplete:  s.handoffIncomplete.Load(),
		TLSHandshakeFailed: s.tlsHandshakes.Load(),
		StreamErrors:       s.stream.streamErrors.Load(),
		IdleTimeouts:       s.stream.idleTimeouts.Load(),
		HalfCloseTimeouts:  s.stream.halfCloseTimeouts.Load(),
		BytesIn:            s.stream.bytesIn.Load(),
		BytesOut:           s.stream.bytesOut.Load(),
		ByService:          s.byServiceSnapshot(),
	}
}

// serviceStats returns the counters of service, a name lookup knows.
func (s *Server) serviceStats(service string) *streamStats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.byService[service]
	if st == nil {
		if s.byService == nil {
			s.byService = make(map[string]*streamStats)
		}
		st = &streamStats{parent: &s.stream}
		s.byService[service] = st
	}
	return st
}

func (s *Server) byServiceSnapshot() map[string]StreamStats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	out := make(map[string]StreamStats, len(s.byService))
	for name, st := range s.byService {
		out[name] = st.snapshot()
	}
	return out
}

// dialTargets dials targets in order and returns the first conn that
// connects and its target, or nil when all fail or s is force-closed.
func (s *Server) dialTargets(service string, targets []string) (net.Conn, string) {
	if len(targets) == 0 {
		return nil, ""
	}
	// All dials together within DialTimeout, so that the reply still
	// reaches a client using the same config (which waits HandoffTimeout,
	// longer by default) when early targets time out. Each dial gets an
	// even share of the time left: a target that refuses at once leaves
	// its share to those after it, so a far one is not cut at
	// DialTimeout/len(targets).
	end := time.Now().Add(s.cfg.DialTimeout)
	for i, target := range targets {
		per := time.Until(end) / time.Duration(len(targets)-i)
		ctx, cancel := context.WithTimeout(s.g.ctx, per)
		bc, err := dialBackend(ctx, &s.cfg, Backend{Addr: target}, nil)
		cancel()
		if err == nil {
			return bc, target
		}
		if s.g.ctx.Err() != nil {
			return nil, ""
		}
		if s.dialLog.allow(target) {
			s.log.Warn("local service dial failed", "service", service, "backend", target, "targets", len(targets),
				"err", fmt.Errorf("forward: dial local service %q: %w", service, err))
		}
	}
	return nil, ""
}

// logHandshakeFailed logs, at Debug and at most once per dialLogInterval
// per peer IP, a TLS handshake that failed: scanners and hosts without the
// cluster key can repeat it at will.
func (s *Server) logHandshakeFailed(c net.Conn, err error) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	peer := c.RemoteAddr().String()
	host, _, splitErr := net.SplitHostPort(peer)
	if splitErr != nil {
		host = peer
	}
	if !s.dialLog.allow("tls\x00" + host) {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no TLS handshake within %v: %w", s.cfg.HandoffTimeout, err)
	}
	s.log.Debug("tls handshake failed", "peer", peer, "err", err)
}

// logRefused logs, at Debug, a handoff that ended before copying.
func (s *Server) logRefused(c net.Conn, service, status string, err error) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no handoff header within %v: %w", s.cfg.HandoffTimeout, err)
	}
	s.log.Debug("handoff failed", "service", service, "peer", c.RemoteAddr().String(), "status", status, "err", err)
}

// Shutdown stops accepting, waits for open connections to end for up to
// DrainTimeout or until ctx ends, force-closes the rest, and returns once
// every goroutine of s has exited. It returns ctx's error (wrapped) if ctx
// ended before the drain did. Safe to call more than once and concurrently,
// and before Start: later calls return at once with an error matching
// net.ErrClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		return fmt.Errorf("forward: server shutdown: %w", net.ErrClosed)
	}
	s.shutdown = true
	l := s.ln
	s.mu.Unlock()
	if l != nil {
		l.close()
	}
	err := s.g.drain(ctx, s.cfg.DrainTimeout, s.log)
	s.log.Info("data port stopped")
	return err
}
