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

	"github.com/miekg/dns"
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

	queryNow chan struct{} // 1-buffered; non-blocking send, a pending signal is enough
	changed  chan struct{} // 1-buffered; non-blocking send, run re-reads the state
	peers    chan Peer     // buffered peerBuffer; readers drop peers when full
	stop     chan struct{} // closed by Close

	loopWG   sync.WaitGroup // run
	wg       sync.WaitGroup // readers and notify
	handlers sync.WaitGroup // packets being handled and delayed answers; Add only under mu while !closed

	failed map[string]bool // interfaces whose socket failed to open; owned by run

	mu       sync.Mutex         // guards the fields below and socket.zone, socket.nets
	started  bool               // Start has begun
	closed   bool               // Close has begun
	services []Service          // current, lower-case names, sorted
	goodbyes []Service          // withdrawn, goodbye not yet sent
	changes  map[string]bool    // service types ("_redis._tcp.local.") to announce
	socks    map[string]*socket // active sockets by interface name
	disc     *discovery
}

// socket is the mDNS socket of one interface. A socket is replaced, not
// changed, when the interface's index or address changes.
type socket struct {
	iface string       // read-only
	index int          // read-only
	conn  *net.UDPConn // multicast, bound to 224.0.0.251:5353; read-only
	local netip.Addr   // the interface's own address; read-only
	ucast *net.UDPConn // bound to local:5353 for direct unicast queries; nil if that failed; read-only
	addr  netip.Addr   // A record address; read-only
	// loopback: the interface carries only this host's own packets, whose
	// source may be any local address (multicast on lo leaves with a
	// non-loopback source, 127/8 being host-scoped), so onLink is moot.
	loopback bool // read-only

	// nets are the interface's IPv4 prefixes, which a packet's source must
	// be in (onLink). Updated by rescan; guarded by Server.mu.
	nets []netip.Prefix
	// ownQueries are the queries we sent whose looped-back copy has not
	// been seen yet, by packet. Guarded by Server.mu.
	ownQueries map[string]ownQuery
	// multicast is when each record (recordKey) was last multicast here,
	// for the RFC 6762 §6 one-second rule. Guarded by Server.mu.
	multicast map[string]time.Time
	// pending is the multicast answer waiting out its shared-record
	// delay; later answers join it. Guarded by Server.mu.
	pending *dns.Msg

	// zone holds the records for addr and Server.services, built when the
	// socket becomes active and rebuilt by SetServices, so answering a
	// query builds nothing. nil if they cannot be built. Guarded by
	// Server.mu.
	zone *zone
}

// close closes both sockets.
func (so *socket) close() {
	so.conn.Close()
	if so.ucast != nil {
		so.ucast.Close()
	}
}

// writeUDP is Server.write outside tests.
func writeUDP(conn *net.UDPConn, b []byte, dst netip.AddrPort) error {
	_, err := conn.WriteToUDPAddrPort(b, dst)
	return err
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

// start starts the readers of so.
func (s *Server) start(so *socket) {
	s.wg.Go(func() { s.read(so, so.conn, false) })
	if so.ucast != nil {
		s.wg.Go(func() { s.read(so, so.ucast, true) })
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
		queryNow:   make(chan struct{}, 1),
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
	s.mu.Unlock()
	close(s.stop)
	if !started {
		s.handlers.Wait() // tests drive handle without Start
		return nil
	}
	s.loopWG.Wait()   // no more announcements or socket changes
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

// job is a pending announcement.
type job struct {
	sock *socket         // nil: every socket
	only map[string]bool // service types; nil: all
	due  time.Time
	left int
}

// run owns timing: announcements, peer queries and interface rescans.
func (s *Server) run(initial []*socket) {
	now := time.Now()
	var jobs []job
	for _, so := range initial {
		jobs = append(jobs, job{sock: so, due: now, left: announceCount})
	}
	q := newQueries(s.cfg.QueryMin, s.cfg.QueryMax, now)
	rescan := time.NewTicker(s.cfg.RescanInterval)
	defer rescan.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		now = time.Now()
		jobs = s.runJobs(jobs, now)
		s.mu.Lock()
		seen := s.disc.seen
		s.mu.Unlock()
		send, next := q.due(now, s.sockets(), seen)
		for _, so := range send {
			s.query(so)
		}
		for _, j := range jobs {
			if j.due.Before(next) {
				next = j.due
			}
		}
		wake.Reset(time.Until(next))
		select {
		case <-s.stop:
			return
		case <-wake.C:
		case <-s.queryNow:
			s.mu.Lock()
			s.disc.forget()
			s.mu.Unlock()
			q.ask(s.sockets())
		case <-s.changed:
			if only := s.sendGoodbyes(); len(only) > 0 {
				jobs = append(jobs, job{only: only, due: time.Now(), left: announceCount})
			}
		case <-rescan.C:
			for _, so := range s.rescan() {
				now := time.Now()
				jobs = append(jobs, job{sock: so, due: now, left: announceCount})
				s.query(so)
				q.sent(so, now)
			}
		}
	}
}

// sockets returns the active sockets.
func (s *Server) sockets() []*socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.socks))
}

// queryNowGap is the least time between two peer queries on a socket
// when QueryNow asks for one (RFC 6762 §5.2).
const queryNowGap = time.Second

// queries is run's peer query timing. Periodic queries go out on every
// socket, QueryMin after the first and doubling up to QueryMax, or every
// QueryMax once a peer has been seen. QueryNow asks for one extra query on
// each socket, sent at once unless that socket sent one less than
// queryNowGap ago, and then when the gap is up; it leaves the back-off
// alone, so calling it often (the mesh does while a node is alone) costs
// at most one query per second per socket. Owned by run.
type queries struct {
	max      time.Duration
	interval time.Duration         // gap after the next periodic query while no peer is seen
	next     time.Time             // next periodic query
	last     map[*socket]time.Time // last query sent on each socket
	asked    map[*socket]bool      // sockets with a QueryNow query to send
}

func newQueries(queryMin, queryMax time.Duration, now time.Time) *queries {
	return &queries{max: queryMax, interval: queryMin, next: now,
		last: make(map[*socket]time.Time), asked: make(map[*socket]bool)}
}

// ask notes a QueryNow for socks.
func (q *queries) ask(socks []*socket) {
	for _, so := range socks {
		q.asked[so] = true
	}
}

// sent notes a query sent on so at now.
func (q *queries) sent(so *socket, now time.Time) {
	q.last[so] = now
	delete(q.asked, so)
}

// due returns which of socks to query at now, noting them as sent, and
// when to call again. seen says whether a peer has been seen.
func (q *queries) due(now time.Time, socks []*socket, seen bool) (send []*socket, wake time.Time) {
	for so := range q.last {
		if !slices.Contains(socks, so) {
			delete(q.last, so)
			delete(q.asked, so)
		}
	}
	if !now.Before(q.next) {
		send = socks
		if seen {
			q.next = now.Add(q.max)
		} else {
			q.next = now.Add(q.interval)
			q.interval = min(2*q.interval, q.max)
		}
	}
	wake = q.next
	for _, so := range socks {
		if !q.asked[so] || slices.Contains(send, so) {
			continue
		}
		if at := q.last[so].Add(queryNowGap); now.Before(at) {
			if at.Before(wake) {
				wake = at
			}
			continue
		}
		send = append(send, so)
	}
	for _, so := range send {
		q.sent(so, now)
	}
	return send, wake
}

// runJobs sends the announcements that are due and returns those left.
func (s *Server) runJobs(jobs []job, now time.Time) []job {
	out := jobs[:0]
	for _, j := range jobs {
		if now.Before(j.due) {
			out = append(out, j)
			continue
		}
		var include func(string) bool
		if j.only != nil {
			include = func(t string) bool { return j.only[t] }
		}
		for _, t := range s.targets(j.sock) {
			if t.zone != nil {
				kind := announceRepeat // announceGap after the first already
				if j.left == announceCount {
					kind = announceFirst
				}
				s.sendRecords(t.sock, t.zone.records(include, true), kind)
			}
		}
		if j.left--; j.left > 0 {
			j.due = now.Add(announceGap)
			out = append(out, j)
		}
	}
	clear(jobs[len(out):])
	return out
}

// target is a snapshot of an active socket and its records.
type target struct {
	sock *socket
	zone *zone // nil: no records
}

// targets snapshots so (if still active), or every active socket when so
// is nil.
func (s *Server) targets(so *socket) []target {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []target
	for _, cur := range s.socks {
		if so == nil || cur == so {
			out = append(out, target{sock: cur, zone: cur.zone})
		}
	}
	return out
}

// sendGoodbyes sends the pending goodbyes and returns the service types
// to announce.
func (s *Server) sendGoodbyes() map[string]bool {
	s.mu.Lock()
	byes, only := s.goodbyes, s.changes
	s.goodbyes, s.changes = nil, make(map[string]bool)
	s.mu.Unlock()
	if len(byes) > 0 {
		for _, t := range s.targets(nil) {
			z, err := newZone(s.id, t.sock.addr, byes)
			if err != nil {
				s.log.Warn("goodbye not sent", "iface", t.sock.iface, "err", err)
				continue
			}
			s.sendRecords(t.sock, z.records(func(t string) bool { return t != peerFQDN }, false), sendGoodbye)
		}
		for _, b := range byes {
			s.log.Debug("service withdrawn", "service", b.Name)
		}
	}
	return only
}

// query sends the peer query on so, or on every socket when so is nil.
func (s *Server) query(so *socket) {
	b, err := peerQuery().Pack()
	if err != nil {
		s.log.Warn("pack mdns query", "err", err)
		return
	}
	for _, t := range s.targets(so) {
		// Noted before the write: the looped-back copy may be read
		// before the write returns.
		s.mu.Lock()
		noteQueryLocked(t.sock, b, time.Now())
		s.mu.Unlock()
		s.sendBytes(t.sock, t.sock.conn, b, mdnsGroup)
	}
}

// ownQueryWindow is how long a query we sent is expected back through
// IP_MULTICAST_LOOP. The copy is delivered during the send, so this only
// bounds how long a lost copy is remembered.
const ownQueryWindow = 2 * time.Second

// ownQuery counts copies of one query we sent that have not come back.
type ownQuery struct {
	n    int
	sent time.Time // last sent
}

// noteQueryLocked remembers that query b is being sent on so, so that
// ownQueryLocked recognises the copy IP_MULTICAST_LOOP hands back.
func noteQueryLocked(so *socket, b []byte, now time.Time) {
	for k, q := range so.ownQueries {
		if now.Sub(q.sent) >= ownQueryWindow {
			delete(so.ownQueries, k)
		}
	}
	if so.ownQueries == nil {
		so.ownQueries = make(map[string]ownQuery)
	}
	q := so.ownQueries[string(b)]
	so.ownQueries[string(b)] = ownQuery{n: q.n + 1, sent: now}
}

// ownQueryLocked reports whether query b from src is the looped-back copy
// of one we sent on so, and if so consumes it. Our queries carry ID 0 like
// everyone's and the source address and port are shared with every mDNS
// stack on this host, so only the exact bytes, counted, tell ours apart:
// another host's (or local daemon's) identical query is still answered
// once our own copy has come back.
func ownQueryLocked(so *socket, b []byte, src netip.AddrPort, now time.Time) bool {
	if src.Port() != mdnsPort {
		return false
	}
	q, ok := so.ownQueries[string(b)]
	if !ok || now.Sub(q.sent) >= ownQueryWindow {
		return false
	}
	if q.n--; q.n == 0 {
		delete(so.ownQueries, string(b))
	} else {
		so.ownQueries[string(b)] = q
	}
	return true
}

// sendKind says how sendRecords treats the RFC 6762 §6 rate limit.
type sendKind int

const (
	// announceFirst leaves out records multicast within multicastGap.
	announceFirst sendKind = iota
	// announceRepeat sends every record: repeats are announceGap apart
	// already, and a record left out of the first must not be missed.
	announceRepeat
	// sendGoodbye withdraws records (TTL 0), unlimited, and forgets when
	// they were multicast so a re-added record is announced at once.
	sendGoodbye
)

// sendRecords multicasts records on so as an announcement or, for
// sendGoodbye, a goodbye. Nothing is sent when no record is left.
func (s *Server) sendRecords(so *socket, rrs []dns.RR, kind sendKind) {
	var m *dns.Msg
	s.mu.Lock()
	switch kind {
	case sendGoodbye:
		m = goodbye(rrs)
		for _, rr := range m.Answer {
			delete(so.multicast, recordKey(rr))
		}
	default:
		m = announcement(limitLocked(so, rrs, s.now(), kind == announceFirst))
	}
	s.mu.Unlock()
	if len(m.Answer) > 0 {
		s.send(so, so.conn, m, mdnsGroup)
	}
}

// recordKey identifies a record for the rate limit: name, type, class
// and data, without TTL and cache-flush bit. A changed record (a new port
// in the SRV) is another record and is not held back.
func recordKey(rr dns.RR) string {
	c := dns.Copy(rr)
	c.Header().Ttl = 0
	c.Header().Class &^= cacheFlush
	return strings.ToLower(c.String())
}

// limitLocked notes that rrs are being multicast on so at now and returns
// them; with filter, those multicast there less than multicastGap ago are
// left out (RFC 6762 §6).
func limitLocked(so *socket, rrs []dns.RR, now time.Time, filter bool) []dns.RR {
	for k, t := range so.multicast { // our own records only: a few dozen
		if now.Sub(t) >= multicastGap {
			delete(so.multicast, k)
		}
	}
	if so.multicast == nil {
		so.multicast = make(map[string]time.Time)
	}
	out := rrs[:0:0]
	for _, rr := range rrs {
		k := recordKey(rr)
		if _, recent := so.multicast[k]; recent && filter {
			continue
		}
		so.multicast[k] = now
		out = append(out, rr)
	}
	return out
}

// multicastAnswer sends reply, a multicast answer, to the group on so,
// leaving out the records multicast there within multicastGap.
func (s *Server) multicastAnswer(so *socket, reply *dns.Msg) {
	s.mu.Lock()
	now := s.now()
	reply.Answer = limitLocked(so, reply.Answer, now, true)
	if len(reply.Answer) > 0 {
		reply.Extra = limitLocked(so, reply.Extra, now, true)
	}
	s.mu.Unlock()
	if len(reply.Answer) > 0 {
		s.send(so, so.conn, reply, mdnsGroup)
	}
}

// deferAnswer sends reply, a multicast answer with shared records, after
// a random 20-120ms (RFC 6762 §6), so that answers from many responders
// do not collide. Answers arriving meanwhile join it, so each socket has
// at most one waiting. Dropped on Close.
func (s *Server) deferAnswer(so *socket, reply *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if p := so.pending; p != nil {
		p.Answer = dedupe(append(p.Answer, reply.Answer...), nil)
		p.Extra = dedupe(append(p.Extra, reply.Extra...), p.Answer)
		return
	}
	so.pending = reply
	delay := sharedDelay + rand.N(sharedJitter)
	s.handlers.Go(func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
		s.mu.Lock()
		m := so.pending
		so.pending = nil
		s.mu.Unlock()
		s.multicastAnswer(so, m)
	})
}

// shared reports whether m answers with a shared record (a PTR).
func shared(m *dns.Msg) bool {
	return slices.ContainsFunc(m.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypePTR })
}

// send writes m to dst through conn, one of so's sockets. Failures are
// logged at Debug: they come and go with interfaces, and rescans deal with
// those.
func (s *Server) send(so *socket, conn *net.UDPConn, m *dns.Msg, dst netip.AddrPort) {
	b, err := m.Pack()
	if err != nil {
		s.log.Warn("pack mdns message", "iface", so.iface, "err", err)
		return
	}
	s.sendBytes(so, conn, b, dst)
}

// sendBytes is send for a packed message.
func (s *Server) sendBytes(so *socket, conn *net.UDPConn, b []byte, dst netip.AddrPort) {
	if err := s.write(conn, b, dst); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("send mdns message", "iface", so.iface, "dst", dst, "err", err)
	}
}

// read receives packets on conn, one of so's sockets, until it is closed.
func (s *Server) read(so *socket, conn *net.UDPConn, unicast bool) {
	buf := make([]byte, maxPacket)
	backoff := time.Duration(0)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, readBackoff), maxBackoff)
			s.log.Debug("read mdns socket", "iface", so.iface, "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.stop:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		s.handle(so, conn, buf[:n], src, unicast)
	}
}

// handle answers a query received on conn (unicast: the socket for direct
// unicast queries) or feeds a response to peer discovery.
func (s *Server) handle(so *socket, conn *net.UDPConn, b []byte, src netip.AddrPort, unicast bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.handlers.Add(1)
	defer s.handlers.Done()
	in, err := s.receiveLocked(so, b, src, unicast, s.now())
	s.mu.Unlock()
	if err != nil {
		s.log.Debug("malformed mdns packet", "iface", so.iface, "peer", src, "err", err)
		return
	}
	for _, p := range in.peers {
		select {
		case s.peers <- p:
			s.log.Debug("peer seen", "peer", p.Node, "addr", p.Addr, "gossip", p.GossipPort, "iface", p.Iface)
		default:
			s.log.Debug("peer dropped, OnPeer is slow", "peer", p.Node)
		}
	}
	switch {
	case in.reply == nil:
	case in.dst != mdnsGroup:
		s.send(so, conn, in.reply, in.dst) // unicast and legacy: at once
	case shared(in.reply):
		s.deferAnswer(so, in.reply)
	default:
		s.multicastAnswer(so, in.reply)
	}
}

// received is what receiveLocked makes of a packet.
type received struct {
	peers []Peer         // from a response
	reply *dns.Msg       // to a query; nil: none
	dst   netip.AddrPort // where reply goes
}

// receiveLocked decodes packet b received on so from src (unicast: on the
// socket for direct unicast queries) and returns the peers it reports or
// the reply it needs. Packets from off the link are dropped silently
// (RFC 6762 §5.5, §11): nobody beyond the link may query or feed us. A
// non-nil error means b is not a DNS message.
func (s *Server) receiveLocked(so *socket, b []byte, src netip.AddrPort, unicast bool, now time.Time) (received, error) {
	if !so.loopback && !onLink(so.nets, src.Addr()) {
		return received{}, nil
	}
	var m dns.Msg
	if err := m.Unpack(b); err != nil {
		return received{}, err
	}
	if m.Response {
		return received{peers: s.disc.parse(&m, src, so.iface, now)}, nil
	}
	if !unicast && ownQueryLocked(so, b, src, now) {
		return received{}, nil // don't answer ourselves
	}
	reply, dst := respond(so.zone, &m, src, unicast)
	return received{reply: reply, dst: dst}, nil
}

// linkLocal4 is IPv4 link-local, on-link by definition (RFC 3927).
var linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")

// onLink reports whether addr is inside one of nets or an IPv4 link-local
// address: the RFC 6762 §11 test for a packet that came from the local
// link.
func onLink(nets []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.Is4() {
		return false
	}
	if linkLocal4.Contains(addr) {
		return true
	}
	for _, n := range nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
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

// rescan opens sockets on new interfaces, closes those of vanished ones
// and replaces those whose index or address changed. It returns the new
// sockets, to announce on. Called by run only.
func (s *Server) rescan() []*socket {
	infos, err := s.listIfaces()
	if err != nil {
		s.log.Warn("list interfaces", "err", err)
		return nil
	}
	want, _ := selectInterfaces(infos, s.cfg.Interfaces, s.cfg.Addr)
	s.mu.Lock()
	var gone, out []*socket
	for name, so := range s.socks {
		// A socket's A record address is either Config.Addr or its local
		// address, so an address change always takes this path.
		i := slices.IndexFunc(want, func(w ifaceInfo) bool { return w.name == name })
		if i < 0 || want[i].index != so.index || want[i].addrs[0] != so.local {
			gone = append(gone, so)
			delete(s.socks, name)
			continue
		}
		so.nets = want[i].nets // a secondary address may have come or gone

	}
	var open []ifaceInfo
	for _, w := range want {
		if s.socks[w.name] == nil {
			open = append(open, w)
		}
	}
	s.mu.Unlock()

	for _, so := range gone {
		so.close()
		s.log.Info("interface removed", "iface", so.iface)
	}
	for _, w := range open {
		so, err := s.open(w)
		if err != nil {
			if !s.failed[w.name] {
				s.log.Warn("interface skipped", "iface", w.name, "err", err)
			}
			s.failed[w.name] = true
			continue
		}
		delete(s.failed, w.name)
		s.mu.Lock()
		s.socks[w.name] = so
		zoneErrs := s.buildZonesLocked(so)
		s.start(so)
		s.mu.Unlock()
		s.logZoneErrors(zoneErrs)
		s.log.Info("interface added", "iface", w.name, "addr", w.addr)
		out = append(out, so)
	}
	return out
}

// open opens the socket for one interface.
func (s *Server) open(w ifaceInfo) (*socket, error) {
	conn, err := openSocket(w.index)
	if err != nil {
		return nil, fmt.Errorf("announce: open mdns socket on interface %q: %w", w.name, err)
	}
	so := &socket{iface: w.name, index: w.index, conn: conn, local: w.addrs[0], addr: w.addr, nets: w.nets,
		loopback: w.flags&net.FlagLoopback != 0}
	if so.ucast, err = openUnicastSocket(so.local); err != nil {
		// Multicast still works; only direct queries to port 5353 do not.
		s.log.Warn("no socket for direct unicast queries", "iface", w.name, "listen", netip.AddrPortFrom(so.local, mdnsPort), "err", err)
	}
	return so, nil
}

// cleanServices validates, lower-cases, dedupes and sorts services.
func (s *Server) cleanServices(in []Service) []Service {
	out := make([]Service, 0, len(in))
	for _, sv := range in {
		sv.Name = strings.ToLower(sv.Name)
		var err error
		switch {
		case ValidServiceName(sv.Name) != nil:
			err = ValidServiceName(sv.Name)
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
	slices.SortFunc(out, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// serviceFQDN is the DNS-SD service type of a service name.
func serviceFQDN(name string) string { return "_" + name + "._tcp." + domain }

// ifaceInfo is what interface selection needs to know about an interface.
type ifaceInfo struct {
	name  string
	index int
	flags net.Flags
	addrs []netip.Addr   // IPv4 only
	nets  []netip.Prefix // the prefixes of addrs (RFC 6762 §11 on-link test)
	addr  netip.Addr     // A record address, set by selectInterfaces
}

// systemInterfaces lists the host's interfaces.
func systemInterfaces() ([]ifaceInfo, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]ifaceInfo, 0, len(ifs))
	for _, ifi := range ifs {
		info := ifaceInfo{name: ifi.Name, index: ifi.Index, flags: ifi.Flags}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue // vanished meanwhile
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || !ip.Unmap().Is4() {
				continue
			}
			ones, bits := ipn.Mask.Size()
			if bits == 8*net.IPv6len {
				ones -= 8 * (net.IPv6len - net.IPv4len) // a v4 mask in v6 form
			}
			if bits == 0 || ones < 0 {
				ones = 32 // non-canonical mask: trust only the address itself
			}
			info.addrs = append(info.addrs, ip.Unmap())
			info.nets = append(info.nets, netip.PrefixFrom(ip.Unmap(), ones))
		}
		out = append(out, info)
	}
	return out, nil
}

// selectInterfaces picks the interfaces to use and their A record address
// (addr, or the interface's first IPv4 address). With names, those that
// are up and have an address are used, and missing lists the names that
// do not exist; without, every up, multicast-capable, non-loopback
// interface with an IPv4 address.
func selectInterfaces(all []ifaceInfo, names []string, addr netip.Addr) (want []ifaceInfo, missing []string) {
	usable := func(i ifaceInfo) (ifaceInfo, bool) {
		if i.flags&net.FlagUp == 0 || len(i.addrs) == 0 {
			return i, false
		}
		i.addr = i.addrs[0]
		if addr.IsValid() {
			i.addr = addr
		}
		return i, true
	}
	if len(names) == 0 {
		for _, i := range all {
			if i.flags&net.FlagMulticast == 0 || i.flags&net.FlagLoopback != 0 {
				continue
			}
			if u, ok := usable(i); ok {
				want = append(want, u)
			}
		}
		return want, nil
	}
	for _, name := range names {
		j := slices.IndexFunc(all, func(i ifaceInfo) bool { return i.name == name })
		if j < 0 {
			missing = append(missing, name)
			continue
		}
		if u, ok := usable(all[j]); ok {
			want = append(want, u)
		}
	}
	return want, missing
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
