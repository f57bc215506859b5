package announce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

const (
	announceCount = 2           // RFC 6762 §8.3: at least two announcements
	announceGap   = time.Second // ... one second apart
	peerBuffer    = 64          // Server.peers
	readBackoff   = 5 * time.Millisecond
	maxBackoff    = time.Second
	closeTimeout  = 2 * time.Second // bound on writing goodbyes in Close
	// RFC 6762 §6: a record is multicast on an interface at most once a
	// second, and a multicast answer with shared records waits 20-120ms.
	multicastGap = time.Second
	sharedDelay  = 20 * time.Millisecond
	sharedJitter = 100 * time.Millisecond
)

// Server announces this node and its services on every selected interface
// and discovers peers. Create it with New; Start it; stop it with Close.
type Server struct {
	cfg        Config   // copy with defaults; read-only
	id         identity // read-only
	log        *slog.Logger
	listIfaces func() ([]ifaceInfo, error) // read-only; systemInterfaces outside tests
	// write sends one datagram; read-only. writeUDP outside tests, which
	// swap it to see what would be sent without a network.
	write func(conn *net.UDPConn, b []byte, dst netip.AddrPort) error
	// now is the clock of the rate limit; read-only. time.Now outside
	// tests.
	now func() time.Time
	// chance returns a random number in [0, 1) for thinPeerAnswer;
	// read-only. rand.Float64 outside tests.
	chance func() float64
	// afterFunc calls f in its own goroutine after d unless the returned
	// stop is called first, which reports whether it stopped the call;
	// read-only. time.AfterFunc outside tests, which call f by hand.
	afterFunc func(d time.Duration, f func()) (stop func() bool)

	queryNow chan struct{} // 1-buffered; non-blocking send, a pending signal is enough
	quietNow chan struct{} // 1-buffered; non-blocking send, run re-reads quiet
	changed  chan struct{} // 1-buffered; non-blocking send, run re-reads the state
	peers    chan Peer     // buffered peerBuffer; readers drop peers when full
	stop     chan struct{} // closed by Close

	loopWG   sync.WaitGroup // run
	wg       sync.WaitGroup // readers and notify
	handlers sync.WaitGroup // packets being handled and delayed answers; Add only under mu while !closed

	failed map[string]bool // interfaces whose socket failed to open; owned by run
	// watch tells run when interfaces change; nil when the system cannot
	// (then run lists them every RescanInterval). Set in Start before run.
	watch *ifaceWatch

	mu       sync.Mutex         // guards the fields below and socket.zone, socket.nets
	started  bool               // Start has begun
	closed   bool               // Close has begun
	services []Service          // current, lower-case names, sorted
	goodbyes []Service          // withdrawn, goodbye not yet sent
	changes  map[string]bool    // service types ("_redis._tcp.local.") to announce
	socks    map[string]*socket // active sockets by interface name
	quiet    bool               // see SetQuiet
	members  int                // see SetMembers
	disc     *discovery
}

// buildZonesLocked rebuilds the zone of every socket in socks from the
// current services and returns the sockets whose records cannot be built,
// for the caller to log after unlocking.
func (s *Server) buildZonesLocked(socks ...*socket) (failed []error) {
	for _, so := range socks {
		z, err := newZone(s.id, so.addr, s.services)
		if err != nil {
			failed = append(failed, fmt.Errorf("interface %q: %w", so.iface, err))
		}
		so.zone = z
	}
	return failed
}

// logZoneErrors logs what buildZonesLocked returned.
func (s *Server) logZoneErrors(errs []error) {
	for _, err := range errs {
		s.log.Warn("records not built; not announcing or answering there", "err", err)
	}
}

// New validates and copies cfg. It does no I/O.
func New(cfg Config) (*Server, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		cfg: c,
		id: identity{
			node:       c.Node,
			cluster:    c.Cluster,
			host:       c.HostName + "." + domain,
			gossipPort: c.GossipPort,
			ttl:        uint32(c.TTL / time.Second),
		},
		log:        log.With("component", "announce"),
		listIfaces: systemInterfaces,
		write:      writeUDP,
		now:        time.Now,
		chance:     rand.Float64,
		afterFunc:  afterFunc,
		queryNow:   make(chan struct{}, 1),
		quietNow:   make(chan struct{}, 1),
		changed:    make(chan struct{}, 1),
		peers:      make(chan Peer, peerBuffer),
		stop:       make(chan struct{}),
		failed:     make(map[string]bool),
		changes:    make(map[string]bool),
		socks:      make(map[string]*socket),
		disc:       newDiscovery(c.Node, c.Cluster),
	}, nil
}

// Start opens a socket on each selected interface, announces the node and
// its services there, queries for peers and starts the background work.
// ctx bounds Start only; the server runs until Close. It fails when an
// interface named in Config.Interfaces does not exist or its socket cannot
// be opened; on error nothing is left open.
func (s *Server) Start(ctx context.Context) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("announce: start: %w", err)
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return fmt.Errorf("announce: start: %w", net.ErrClosed)
	case s.started:
		s.mu.Unlock()
		return errors.New("announce: start: already started")
	}
	s.started = true
	s.mu.Unlock()

	socks := make(map[string]*socket)
	defer func() {
		if err != nil {
			for _, so := range socks {
				so.close()
			}
			s.mu.Lock()
			s.started = false
			s.mu.Unlock()
		}
	}()
	infos, err := s.listIfaces()
	if err != nil {
		return fmt.Errorf("announce: start: list interfaces: %w", err)
	}
	want, missing := selectInterfaces(infos, s.cfg.Interfaces, s.cfg.Addr)
	if len(missing) > 0 {
		return fmt.Errorf("announce: start: interface %s does not exist", quoteAll(missing))
	}
	for _, w := range want {
		so, err := s.open(w)
		if err != nil {
			if len(s.cfg.Interfaces) > 0 {
				return err
			}
			s.log.Warn("interface skipped", "iface", w.name, "err", err)
			s.failed[w.name] = true
			continue
		}
		socks[w.name] = so
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("announce: start: %w", net.ErrClosed)
	}
	s.socks = socks
	initial := slices.Collect(maps.Values(socks))
	zoneErrs := s.buildZonesLocked(initial...)
	for _, so := range initial {
		s.start(so)
	}
	s.wg.Go(s.notify)
	if w, err := newIfaceWatch(); err != nil {
		s.log.Debug("interface changes are polled", "every", s.cfg.RescanInterval, "err", err)
	} else {
		s.watch = w
		s.wg.Go(w.run)
	}
	s.loopWG.Go(func() { s.run(initial) })
	s.mu.Unlock()
	s.logZoneErrors(zoneErrs)
	names := slices.Sorted(maps.Keys(socks))
	if len(names) == 0 {
		s.log.Warn("started without a usable interface; rescanning", "every", s.cfg.RescanInterval)
	}
	s.log.Info("started", "node", s.cfg.Node, "cluster", s.cfg.Cluster, "host", s.id.host, "ifaces", names)
	return nil
}

// SetServices replaces the set of services this node hosts. Names are
// case-insensitive and published in lower case; invalid or duplicate
// entries (and the reserved name "ambassador") are logged and skipped.
// After Start, new and changed services are announced and withdrawn ones
// get a goodbye. Safe to call at any time, also before Start.
func (s *Server) SetServices(svcs []Service) {
	clean := s.cleanServices(svcs)
	s.mu.Lock()
	old := s.services
	s.services = clean
	zoneErrs := s.buildZonesLocked(slices.Collect(maps.Values(s.socks))...)
	notify := s.started && !s.closed
	if notify {
		for _, n := range clean {
			i := slices.IndexFunc(old, func(o Service) bool { return o.Name == n.Name })
			if i < 0 || old[i] != n {
				s.changes[serviceFQDN(n.Name)] = true
			}
			s.goodbyes = slices.DeleteFunc(s.goodbyes, func(g Service) bool { return g.Name == n.Name })
		}
		for _, o := range old {
			if !slices.ContainsFunc(clean, func(n Service) bool { return n.Name == o.Name }) {
				s.goodbyes = append(s.goodbyes, o)
				delete(s.changes, serviceFQDN(o.Name))
			}
		}
	}
	s.mu.Unlock()
	s.logZoneErrors(zoneErrs)
	if notify {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

// QueryNow sends one peer query on each interface at once, or, where one
// went out less than a second ago, once that second is up (RFC 6762
// §5.2), and makes every peer be reported again. It leaves the query
// back-off alone, so calling it often does not flood the link. A peer
// that multicast its records less than a second before the query does
// not answer it (RFC 6762 §6), so a caller that needs a fresh report
// calls QueryNow again later. Safe for concurrent use; does not block.
func (s *Server) QueryNow() {
	select {
	case s.queryNow <- struct{}{}:
	default:
	}
}

// SetQuiet says whether the node's peers are known by other means (the
// mesh: it is in a cluster with other members). While quiet, periodic
// peer queries go out ten times less often (every 10×QueryMax, 5 minutes
// by default); leaving quiet starts the query back-off over from QueryMin
// with a query at once. QueryNow is not affected. RFC 6762 §5.2 asks
// queriers to query less once they have their answers; the periodic
// query that remains finds a group of nodes that formed a cluster of
// their own. Safe for concurrent use; does not block.
func (s *Server) SetQuiet(quiet bool) {
	s.mu.Lock()
	changed := s.quiet != quiet
	s.quiet = quiet
	s.mu.Unlock()
	if changed {
		select {
		case s.quietNow <- struct{}{}:
		default:
		}
	}
}

// SetMembers tells the server how many nodes the cluster it is in has
// (this one included; 0 or 1: alone). In a cluster of more than
// peerAnswerers (or with that many peers' PTR records held), a unicast
// (QU) peer query from another mDNS stack is answered with probability
// peerAnswerers/n, so a newcomer gets about peerAnswerers answers instead
// of one from every node (see thinPeerAnswerLocked), and a repeated
// announcement leaves out the peer records (skipPeerRepeat). Safe for
// concurrent use; does not block.
func (s *Server) SetMembers(n int) {
	s.mu.Lock()
	s.members = n
	s.mu.Unlock()
}

// Interfaces returns the names of the interfaces with an open socket,
// sorted.
func (s *Server) Interfaces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.socks))
}

// Close sends goodbyes for this node's records, including those of
// services withdrawn by a SetServices whose goodbyes are still pending,
// closes the sockets and waits for the goroutines to exit. Later calls return an error matching
// net.ErrClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("announce: close: %w", net.ErrClosed)
	}
	s.closed = true
	started := s.started
	for _, so := range s.socks {
		s.dropHeldLocked(so) // Close waits for no held query's delay
	}
	s.mu.Unlock()
	close(s.stop)
	if !started {
		s.handlers.Wait() // tests drive handle without Start
		return nil
	}
	s.loopWG.Wait() // no more announcements or socket changes
	if s.watch != nil {
		s.watch.close() // its reader ends; s.wg waits for it below
	}
	s.handlers.Wait() // no more replies

	s.mu.Lock()
	socks := slices.Collect(maps.Values(s.socks))
	// Withdrawn services whose goodbye run had no time to send are
	// withdrawn now, with the rest.
	svcs := append(slices.Clone(s.services), s.goodbyes...)
	s.goodbyes = nil
	s.socks = make(map[string]*socket)
	s.mu.Unlock()

	deadline := time.Now().Add(closeTimeout)
	for _, so := range socks {
		z, err := newZone(s.id, so.addr, svcs)
		if err != nil {
			s.log.Warn("goodbye not sent", "iface", so.iface, "err", err)
			continue
		}
		so.conn.SetWriteDeadline(deadline)
		s.sendRecords(so, z.records(nil, true), sendGoodbye)
	}
	for _, so := range socks {
		so.close()
	}
	s.wg.Wait()
	s.log.Info("stopped")
	return nil
}

// notify calls OnPeer for each discovered peer, one at a time.
func (s *Server) notify() {
	for {
		select {
		case <-s.stop:
			return
		case p := <-s.peers:
			if s.cfg.OnPeer != nil {
				s.cfg.OnPeer(p)
			}
		}
	}
}

// cleanServices validates, lower-cases, dedupes and sorts services.
func (s *Server) cleanServices(in []Service) []Service {
	out := make([]Service, 0, len(in))
	for _, sv := range in {
		sv.Name = sv.Name.Lower()
		var err error
		switch {
		case ValidServiceName(sv.Name.String()) != nil:
			err = ValidServiceName(sv.Name.String())
		case sv.Name == peerServiceName:
			err = errors.New("announce: service name \"ambassador\" is reserved")
		case sv.Port < 1 || sv.Port > 65535:
			err = fmt.Errorf("announce: service %q: port %d is not in 1..65535", sv.Name, sv.Port)
		case slices.ContainsFunc(out, func(o Service) bool { return o.Name == sv.Name }):
			err = fmt.Errorf("announce: service %q is listed twice", sv.Name)
		}
		if err != nil {
			s.log.Warn("service ignored", "service", sv.Name, "err", err)
			continue
		}
		out = append(out, sv)
	}
	slices.SortFunc(out, func(a, b Service) int { return strings.Compare(a.Name.String(), b.Name.String()) })
	return out
}

// serviceFQDN is the DNS-SD service type of a service name.
func serviceFQDN(name svcname.Name) string { return "_" + name.String() + "._tcp." + domain }

// afterFunc is Server.afterFunc outside tests.
func afterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
