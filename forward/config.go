package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Config configures a Proxy or a Server. Durations are wall-clock time.
// Zero values are not defaults: start from DefaultConfig and override fields.
// New and NewServer copy the Config, so later changes by the caller have no
// effect.
type Config struct {
	// DialTimeout bounds connecting to one backend (the TCP connect, all
	// DialAttempt attempts); a dial that times out fails over to the next
	// backend. The TLS handshake and handoff with a peer's data port that
	// follow have HandoffTimeout of their own. A Server splits DialTimeout
	// evenly among a service's targets, so that with the same config on
	// both sides it answers before the client gives up (when DialTimeout
	// is at most HandoffTimeout, as by default). Default 1s; must be > 0.
	DialTimeout time.Duration
	// DialAttempt is how long the first attempt to connect to a backend
	// (the TCP connect alone, not TLS or the handoff) may go unanswered
	// before a second one to the same address starts next to it; the gap
	// doubles for each further attempt, all within DialTimeout, and the
	// first to connect wins. A refused connect is not retried. A SYN or
	// SYN-ACK lost on the way costs TCP's 1s initial retransmission
	// timeout, while a new attempt sends a new SYN much sooner: under 10 %
	// packet loss 1.3 % of new connections failed with one attempt (issue
	// 10). Default 250ms, above Linux's 200ms minimum RTO so that a merely
	// slow connect on a busy host costs little; 0 = one attempt; must be
	// >= 0.
	DialAttempt time.Duration
	// HandoffTimeout bounds the handoff on both sides of a peer's data
	// port. On a Server: how long a client may take, from accept, to send
	// its full handoff header (and the TLS handshake, see ServerTLS). On a
	// Proxy dialing a peer (Backend.Service != ""): how long, once the TCP
	// connection is up, the TLS handshake, the header and the peer's
	// one-byte reply may take; a handoff that times out fails over like a
	// failed dial. Its own budget rather than what is left of DialTimeout,
	// since a connect that needed resent SYNs leaves little, and a lost
	// header or reply segment costs TCP a retransmission timeout of 200ms
	// to 1s, doubling per loss. Default 5s, room for a few resends; must
	// be > 0.
	HandoffTimeout time.Duration
	// DrainTimeout is how long Shutdown waits for open connections to end
	// before it force-closes them. Default 10s; must be >= 0 (0 = force-close
	// at once).
	DrainTimeout time.Duration
	// KeepAlive is the TCP keepalive idle time and probe interval on every
	// connection. Default 15s; negative = keepalives off; 0 is rejected.
	KeepAlive time.Duration
	// UserTimeout is TCP_USER_TIMEOUT on every connection: how long sent data
	// may stay unacknowledged before the kernel drops the connection. Default
	// 30s; negative = off (kernel default); 0 is rejected.
	UserTimeout time.Duration
	// IdleTimeout closes a connection, by resetting both sides, once no
	// byte has moved either way for this long. Default 0 = none; must be
	// >= 0.
	IdleTimeout time.Duration
	// HalfCloseTimeout closes a connection, by resetting both sides, once
	// one direction has ended (a FIN) and the other has moved no byte for
	// this long, so a peer that vanished after half-closing does not hold
	// the connection forever. Default 1m; 0 = none; must be >= 0.
	HalfCloseTimeout time.Duration
	// MaxConns caps concurrent connections per listener; the accept loop
	// stops accepting while the cap is reached. Default 10000; must be > 0.
	MaxConns int
	// Logger receives the component's logs, with component=forward added.
	// nil = slog.Default().
	Logger *slog.Logger

	// ClientTLS, when non-nil, makes every dial to a peer's data port
	// (Backend.Service != "") TLS: the connection is wrapped in tls.Client
	// with the config ClientTLS returns for b, and the handshake completes
	// within the handoff's HandoffTimeout, before the header is sent. An
	// error from ClientTLS (for example, no fingerprint known for b.Node)
	// or from the handshake counts as a failed dial, so the next backend is
	// tried. ClientTLS is called from connection goroutines, concurrently,
	// and must not block; the returned config must not be modified
	// afterwards. Dials to a service itself (Service == "") stay plain.
	// nil = plain TCP, spliced. The data plane depends on ServerTLS on the
	// peer matching: a TLS client and a plain server do not talk.
	ClientTLS func(b Backend) (*tls.Config, error)
	// ServerTLS, when non-nil, makes a Server accept only TLS: each
	// accepted conn is wrapped in tls.Server with this config, and the
	// handshake must complete within HandoffTimeout (the same deadline
	// also covers the header, the local dial and the reply) before the
	// header is read. A failed handshake closes the conn without a byte of
	// plaintext; it is logged at Debug, at most once per 10s per peer IP.
	// The config needs a certificate; client authentication is up to it
	// (set ClientAuth). NewServer clones it. Ignored by a Proxy. nil =
	// plain TCP, spliced.
	ServerTLS *tls.Config

	// ListenFunc opens listeners. nil = a net.ListenConfig that sets
	// KeepAlive on the listening socket, which accepted conns inherit;
	// UserTimeout is set on each accepted conn whatever ListenFunc is. A
	// seam for tests.
	ListenFunc func(ctx context.Context, network, address string) (net.Listener, error)
	// DialFunc dials backends and local services. nil = a net.Dialer with
	// KeepAlive and UserTimeout applied. The ctx carries the DialTimeout
	// deadline. A seam for tests.
	DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

	// defaultDial is set by prepare when DialFunc is its default: then a
	// Proxy may dial plain backends itself, in an event loop.
	defaultDial bool
}

// DefaultConfig returns a Config with every default set. It does no I/O and
// is safe for concurrent use.
func DefaultConfig() Config {
	return Config{
		DialTimeout:    1 * time.Second,  // a local or LAN peer answers in ms; fail over fast
		HandoffTimeout: 5 * time.Second,  // a peer sends the header right after connecting
		DrainTimeout:   10 * time.Second, // let short requests finish on shutdown
		KeepAlive:      15 * time.Second, // notice dead idle peers within about a minute
		UserTimeout:    30 * time.Second, // notice dead peers with unacked data
		MaxConns:       10000,            // well below a typical 64k fd limit

		HalfCloseTimeout: time.Minute, // a half-closed peer answers within seconds, or is gone
		DialAttempt:      250 * time.Millisecond,
	}
}

// validate reports the first invalid field. It has no side effects.
func (c *Config) validate() error {
	switch {
	case c.DialTimeout <= 0:
		return fmt.Errorf("forward: config: DialTimeout %v must be > 0", c.DialTimeout)
	case c.DialAttempt < 0:
		return fmt.Errorf("forward: config: DialAttempt %v must be >= 0", c.DialAttempt)
	case c.HandoffTimeout <= 0:
		return fmt.Errorf("forward: config: HandoffTimeout %v must be > 0", c.HandoffTimeout)
	case c.DrainTimeout < 0:
		return fmt.Errorf("forward: config: DrainTimeout %v must be >= 0", c.DrainTimeout)
	case c.KeepAlive == 0:
		return fmt.Errorf("forward: config: KeepAlive %v must be > 0, or negative for off", c.KeepAlive)
	case c.UserTimeout == 0:
		return fmt.Errorf("forward: config: UserTimeout %v must be > 0, or negative for off", c.UserTimeout)
	case c.UserTimeout > 0 && c.UserTimeout.Milliseconds() > int64(^uint32(0)>>1):
		return fmt.Errorf("forward: config: UserTimeout %v is too large", c.UserTimeout)
	case c.IdleTimeout < 0:
		return fmt.Errorf("forward: config: IdleTimeout %v must be >= 0", c.IdleTimeout)
	case c.HalfCloseTimeout < 0:
		return fmt.Errorf("forward: config: HalfCloseTimeout %v must be >= 0", c.HalfCloseTimeout)
	case c.MaxConns <= 0:
		return fmt.Errorf("forward: config: MaxConns %d must be > 0", c.MaxConns)
	case c.ServerTLS != nil && len(c.ServerTLS.Certificates) == 0 && c.ServerTLS.GetCertificate == nil && c.ServerTLS.GetConfigForClient == nil:
		return errors.New("forward: config: ServerTLS has no certificate")
	}
	return nil
}

// prepare validates c and fills in the nil seams and the logger.
func (c *Config) prepare() error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("component", "forward")
	c.ServerTLS = c.ServerTLS.Clone() // nil stays nil
	// Keepalive is set once on the listening socket, which accepted sockets
	// inherit on Linux (TCP_USER_TIMEOUT they do not: see setUserTimeout),
	// and in the dialer's Control together with TCP_USER_TIMEOUT: net's
	// own KeepAlive handling would spend four setsockopt calls on every
	// accepted and every dialed conn.
	// (Elsewhere net sets them on each conn: see sockopt_other.go.)
	if c.ListenFunc == nil {
		c.ListenFunc = c.listenConfig().Listen
	}
	if c.DialFunc == nil {
		c.DialFunc = c.dialer().DialContext
		c.defaultDial = true
	}
	return nil
}

func isTCP(network string) bool { return network == "tcp" || network == "tcp4" || network == "tcp6" }

func (c *Config) controlUserTimeout(network string, rc syscall.RawConn) error {
	if c.UserTimeout < 0 || !isTCP(network) {
		return nil
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = setUserTimeoutFD(fd, c.UserTimeout)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("forward: set TCP_USER_TIMEOUT: %w", serr)
	}
	return nil
}

// setUserTimeout sets TCP_USER_TIMEOUT on an accepted conn: Linux does not
// copy it from the listening socket. It leaves c itself untouched (no
// wrapping), and ignores conns that are not sockets, such as test fakes.
func (c *Config) setUserTimeout(conn net.Conn) error {
	sc, ok := conn.(syscall.Conn)
	if !ok || c.UserTimeout < 0 {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	return c.controlUserTimeout("tcp", rc)
}
