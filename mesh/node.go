// Package mesh wires one ambassador node together: discovery (announce),
// membership and catalog (gossip) and the data plane (forward). It is the
// only package that knows all three, and it translates between them:
// discovered peers become gossip joins, catalog changes become routes.
package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ambassador-mesh/ambassador/announce"
	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/gossip"
	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/nodename"
	"github.com/ambassador-mesh/ambassador/trust"
	"github.com/ambassador-mesh/ambassador/upstream"
)

// Node is one ambassador. Create it with New, run it with Run.
type Node struct {
	cfg    Config
	log    *slog.Logger
	name   string
	addr   netip.Addr
	ifaces []string

	cluster  *gossip.Cluster
	disc     *announce.Server // nil with NoMDNS
	proxy    *forward.Proxy
	data     *forward.Server
	checker  *health.Checker
	resolver *upstream.Resolver // nil without upstreams
	api      localAPI           // the status address and the control socket
	names    *names             // --hosts and --dns

	peers  chan string  // join candidates from discovery; buffered, sends never block
	gate   peerGate     // limits the discovered peers sent to peers, see discovery.go
	joined atomic.Int32 // joins of this node's own that succeeded (see joinedCluster)

	pubMu    sync.Mutex // serializes publish, with Run's first publish and gossip start
	reloadMu sync.Mutex // held by Reload throughout; taken before pubMu and mu

	mu            sync.Mutex
	announces     []Announce                   // guarded by mu; what this node hosts now
	fileAnnounces []Announce                   // guarded by mu; the configured announcements (flags and file) of the last start or reload
	forwards      []Forward                    // guarded by mu; what it forwards (empty: all)
	balance       map[string]string            // guarded by mu; policy by service name
	checks        map[string]health.Check      // guarded by mu; by service name
	healthy       map[string]bool              // guarded by mu; last check result by service name
	upTargets     map[string][]upstream.Target // guarded by mu; resolved upstreams by name
	logins        map[string]handshakeFunc     // guarded by mu; credentials handshakes by name
	keys          []string                     // guarded by mu; the cluster keys in use (Reload rotates them)

	ready chan struct{} // closed once Run has started everything

	kick chan struct{} // 1-buffered: wakes the reconcile loop; dropped sends are fine

	events eventHub // GET /v1/events; fed by the reconcile loop (events.go)

	// lookupIP looks up the IPv4 addresses of a --join host name; nil:
	// the system's resolver. A seam for tests, set before Run.
	lookupIP func(ctx context.Context, host string) ([]netip.Addr, error)

	// recheck is how long after a successful join a seed not seen in the
	// member list is joined again; 0: seedRecheck. A seam for tests, set
	// before Run.
	recheck time.Duration

	// firstView, when set, is called in Run between taking the view that
	// Run publishes first and handing it to gossip. A seam for tests, set
	// before Run.
	firstView func()

	wg    sync.WaitGroup // joinLoop and reconcileLoop
	joins sync.WaitGroup // joins in flight (joinLoop's); stop waits for them only up to its deadline
}

// New validates cfg, works out the node's name and address (interface
// look-ups happen here), and builds the components without opening any
// socket. The config is copied.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Announce = slices.Clone(cfg.Announce)
	cfg.Forward = slices.Clone(cfg.Forward)
	cfg.Join = append([]string(nil), cfg.Join...)
	cfg.Interfaces = append([]string(nil), cfg.Interfaces...)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	n := &Node{cfg: cfg, log: log.With("component", "mesh"), peers: make(chan string, 64), kick: make(chan struct{}, 1), ready: make(chan struct{}),
		announces: slices.Clone(cfg.Announce), fileAnnounces: slices.Clone(cfg.Announce), forwards: slices.Clone(cfg.Forward), balance: byName(cfg.Balance),
		checks: byName(cfg.Checks), keys: slices.Clone(cfg.Keys), healthy: map[string]bool{}, upTargets: map[string][]upstream.Target{}}

	ifaces, err := usableInterfaces(cfg.Interfaces)
	if err != nil {
		return nil, err
	}
	for _, ifc := range ifaces {
		n.ifaces = append(n.ifaces, ifc.Name)
	}
	if cfg.Bind != "" {
		n.addr = netip.MustParseAddr(cfg.Bind)
	} else if a, ok := firstIPv4(ifaces); ok {
		n.addr = a
	} else {
		n.addr = netip.MustParseAddr("127.0.0.1")
		n.log.Warn("no usable network interface: advertising 127.0.0.1, peers on other hosts cannot reach this node")
	}
	// The data plane trusts either an operator's CA or, with a cluster
	// key and no CA, the fingerprints that members gossip. A CA
	// certificate names its node, so it comes before the node's name.
	var ca *trust.CA
	var id *trust.Identity
	if cfg.operatorCA() {
		if ca, err = trust.LoadCA(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey, cfg.Cluster); err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
		switch {
		case cfg.Node == "":
			cfg.Node = ca.Node()
			if err := nodename.Check(cfg.Node); err != nil {
				return nil, fmt.Errorf("mesh: node name in the URI SAN of cert file %s: %w", cfg.TLSCert, err)
			}
		case cfg.Node != ca.Node():
			return nil, fmt.Errorf("mesh: node %q, but cert file %s names node %q (%s): peers would refuse this node",
				cfg.Node, cfg.TLSCert, ca.Node(), trust.NodeURI(cfg.Cluster, ca.Node()))
		}
		n.cfg.Node = cfg.Node
	}
	n.name = cfg.Node
	if n.name == "" {
		n.name = defaultNodeName(n.addr, cfg.GossipPort)
	}
	if ca == nil && len(cfg.Keys) > 0 {
		if id, err = trust.NewIdentity(n.name); err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
	}

	gc := cfg.gossipConfig()
	gc.NodeName = n.name
	gc.Cluster = cfg.Cluster
	gc.BindAddr = cfg.listenIP()
	gc.BindPort = cfg.GossipPort
	gc.AdvertiseAddr = n.addr.String()
	gc.AdvertisePort = cfg.GossipPort
	gc.DataPort = cfg.DataPort
	gc.Logger = log
	if id != nil {
		gc.Fingerprint = id.Fingerprint()
	}
	for _, k := range cfg.Keys {
		b, _ := trust.ParseKey(k) // validated in Config.Validate
		gc.Keys = append(gc.Keys, b)
	}
	if n.cluster, err = gossip.New(gc); err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}

	fc := forward.DefaultConfig()
	fc.DrainTimeout = cfg.DrainTimeout
	fc.DialTimeout = cfg.DialTimeout
	fc.IdleTimeout, fc.HalfCloseTimeout = cfg.IdleTimeout, cfg.HalfCloseTimeout // both hops
	fc.Logger = log
	dc := fc
	switch {
	case ca != nil:
		// A peer with a certificate from the operator's CA that names this
		// cluster is trusted, whatever its address: no fingerprint is
		// needed. A server must also be the node the catalog says.
		// Configs are built once per node and resume sessions; the
		// certificate is checked on every connection all the same.
		confs := ca.ClientConfigs()
		fc.ClientTLS = func(b forward.Backend) (*tls.Config, error) { return confs.Get(b.Node), nil }
		dc.ServerTLS = ca.ServerConfig()
	case id != nil:
		// Peers pin each other's certificate by the fingerprint that
		// travels in the key-authenticated gossip: no CA to set up, and a
		// host without the key cannot talk to a data port at all.
		// Configs are built once per fingerprint and resume sessions; the
		// fingerprint is checked on every connection all the same.
		confs := id.ClientConfigs()
		fc.ClientTLS = func(b forward.Backend) (*tls.Config, error) {
			fp := n.cluster.Fingerprint(b.Node)
			if fp == "" {
				return nil, fmt.Errorf("mesh: no certificate fingerprint known for node %q", b.Node)
			}
			return confs.Get(fp), nil
		}
		// Only members may open a connection to this node's data port.
		dc.ServerTLS = trust.ServerConfig(id, n.cluster.HasFingerprint)
	}
	if n.proxy, err = forward.New(fc); err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	if n.data, err = forward.NewServer(dc, n.lookupLocal); err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}

	if n.logins, err = n.loadCredentials(cfg.Credentials); err != nil {
		return nil, err
	}
	for _, f := range cfg.Forward {
		host, _, _ := net.SplitHostPort(f.Listen)
		if ip := net.ParseIP(host); f.Listen != "" && n.logins[f.Name.Lower().String()] != nil && (ip == nil || !ip.IsLoopback()) {
			n.log.Warn("a service with credentials listens beyond this host: anyone who reaches it is logged in", "service", f.Name, "listen", f.Listen)
		}
	}

	hc := health.DefaultConfig()
	hc.Interval, hc.Timeout, hc.Logger = cfg.CheckInterval, cfg.CheckTimeout, log
	if n.checker, err = health.New(hc, n.onHealth); err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	if n.names, err = newNames(cfg.HostsFile, cfg.DNS, n.log); err != nil {
		return nil, err
	}
	if len(cfg.Upstream) > 0 {
		uc := upstream.DefaultConfig()
		uc.Logger = log
		for _, r := range cfg.Resolvers {
			a, _ := resolverAddr(r) // validated in Config.Validate
			uc.Servers = append(uc.Servers, a)
		}
		if n.resolver, err = upstream.New(uc); err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
	}

	if !cfg.NoMDNS {
		ac := announce.DefaultConfig()
		ac.Node = n.name
		ac.Cluster = cfg.Cluster
		ac.GossipPort = cfg.GossipPort
		ac.Interfaces = cfg.Interfaces
		if cfg.Bind != "" {
			ac.Addr = n.addr
		}
		ac.OnPeer = n.onPeer
		ac.Logger = log
		if n.disc, err = announce.New(ac); err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
	}
	return n, nil
}

// Ready is closed once Run has started every component: the ports are
// open and the status API answers. Safe for concurrent use.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Name is the node's name in the cluster. Safe for concurrent use.
func (n *Node) Name() string { return n.name }

// Run starts the node and blocks until ctx is cancelled, then leaves the
// cluster and shuts down in order. It returns a startup error (a port in
// use, an interface that cannot join multicast, this node's name held by a
// live member at another address: see awaitStop) or the first shutdown
// error.
// Run may be called once.
func (n *Node) Run(ctx context.Context) (err error) {
	// Start in the reverse of the stop order: the data port and gossip
	// first, so that by the time peers learn of us from mDNS they can
	// reach us; then discovery. Whatever started is stopped again if a
	// later step fails.
	var st started
	stopping := false
	defer func() {
		if err != nil && !stopping {
			// The error names the step that failed (the caller reports
			// it); undoing the steps before it may fail too.
			err = errors.Join(err, n.stop(ctx, st))
		}
	}()
	if err := n.data.Start(ctx, net.JoinHostPort(n.cfg.listenIP(), strconv.Itoa(n.cfg.DataPort))); err != nil {
		return fmt.Errorf("mesh: data port: %w", err)
	}
	st.data = true

	// Under pubMu, as in publish: a reload (SIGHUP is caught from the
	// start) that published between this view and SetServicesDown would
	// otherwise be overwritten by the older view until the next publish.
	// Held through Start too: a publish while gossip starts races in
	// gossip (Start reads memberlist's local node while the re-advertise
	// that a changed record starts writes it: go test -race).
	n.pubMu.Lock()
	v := n.view()
	if n.firstView != nil {
		n.firstView()
	}
	n.cluster.SetServicesDown(gossipServices(v.services(n.name)), v.down())
	err = n.cluster.Start()
	n.pubMu.Unlock()
	if err != nil {
		return fmt.Errorf("mesh: gossip on port %d: %w", n.cfg.GossipPort, err)
	}
	st.cluster = true

	if err := n.startAPI(); err != nil {
		return err
	}
	st.http = true

	loopCtx, cancelLoops := context.WithCancel(ctx)
	st.cancelLoops = cancelLoops
	n.wg.Go(func() { n.joinLoop(loopCtx) })
	n.wg.Go(func() { n.reconcileLoop(loopCtx) })
	if err := n.names.Start(loopCtx); err != nil {
		return err
	}

	// Under pubMu, as in publish: the control API is up, and an announce
	// that published between this view and the checker's Set would
	// otherwise be overwritten by the older view, its service unchecked.
	n.pubMu.Lock()
	n.syncChecks()
	n.pubMu.Unlock()
	if err := n.checker.Start(loopCtx); err != nil {
		return fmt.Errorf("mesh: health checks: %w", err)
	}
	st.checker = true
	if n.resolver != nil {
		n.watchUpstreams(loopCtx)
		st.resolver = true
	}

	// A node told to stop while it started (ctx done) does not begin
	// announcing itself: awaitStop returns at once and it stops cleanly,
	// as it would once running. disc.Start fails on a done ctx, which
	// made such a stop exit 1 with "context canceled".
	if n.disc != nil && ctx.Err() == nil {
		n.pubMu.Lock()
		n.disc.SetServices(announceServices(n.view().services(n.name)))
		n.pubMu.Unlock()
		if err := n.disc.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("mesh: mdns: %w", err)
		}
		st.disc = true
	}
	if len(n.cfg.Keys) == 0 { // Validate refuses an operator CA without a key
		n.log.Warn("no --key: gossip and forwarded connections are not encrypted or authenticated; any host on this network can join and reach announced services")
		if len(n.cfg.Credentials) > 0 {
			n.log.Warn("no --key with --credentials: the credentials go to whichever node announces the service, and without a key any host on this network can announce it")
		}
	}
	n.log.Info("node started", "node", n.name, "addr", n.addr.String(), "cluster", n.cfg.Cluster,
		"gossip_port", n.cluster.GossipPort(), "data_port", n.cfg.DataPort, "interfaces", strings.Join(n.ifaces, ","),
		"mdns", n.disc != nil, "http", n.cfg.HTTP)
	for _, a := range v.announces {
		n.log.Info("announcing", "service", a.Name, "port", a.Port, "backend", a.Target())
	}

	close(n.ready)
	st.running = true
	werr := n.awaitStop(ctx)
	stopping = true
	if werr != nil {
		// Not Leave: the leave message and the left record would carry
		// our name, and so take down the node that rightly holds it.
		st.noLeave = true
	}
	return errors.Join(werr, n.stop(ctx, st))
}

// awaitStop blocks until ctx is done (nil), or until another live node
// turns out to hold this node's name (an error: this node must stop); see
// awaitNameTaken.
func (n *Node) awaitStop(ctx context.Context) error {
	return awaitNameTaken(ctx, n.cluster, n.name, n.log)
}

// started records what Run has started, so that stop undoes exactly that.
type started struct {
	data, cluster, http, disc bool
	noLeave                   bool // stop without a gossip Leave (another node holds our name)
	running                   bool // the start completed; false: stop undoes a failed start
	checker, resolver         bool
	cancelLoops               context.CancelFunc
}

// stop runs the shutdown sequence: stop announcing (mDNS goodbyes), leave
// the cluster so peers stop routing to us, stop the loops so nothing opens
// a listener again, drain the data plane, then the status API and gossip.
// Each step gets a bounded context of its own because ctx is already
// cancelled here.
//
// A node whose start failed never ran: it logs neither "leaving" nor
// "stopped", only the error that Run returns says what happened.
func (n *Node) stop(ctx context.Context, st started) error {
	if st.running {
		n.log.Info("leaving", "node", n.name)
	} else {
		n.log.Debug("start failed: stopping what started", "node", n.name)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.DrainTimeout+10*time.Second)
	defer cancel()
	var errs []error
	if st.disc {
		if err := n.disc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("mesh: stop mdns: %w", err))
		}
	}
	if st.cluster && !st.noLeave {
		lctx, lcancel := context.WithTimeout(sctx, 5*time.Second)
		if err := n.cluster.Leave(lctx); err != nil {
			n.log.Warn("leave did not complete", "err", err)
		}
		lcancel()
	}
	var joinsDone chan struct{}
	if st.cancelLoops != nil {
		st.cancelLoops()
		n.wg.Wait()
		if err := n.names.Close(); err != nil {
			errs = append(errs, err)
		}
		// A join cannot be cancelled: one to a silent peer lasts
		// memberlist's TCPTimeout (30s with --profile wan); looking up a
		// seed given by host name ends with the loops' context. Shutdown
		// does not wait that long (see the end of stop); a join ending
		// afterwards only fails or joins a cluster that is shut down, and
		// its result goes into joinLoop's buffered channel unread.
		joinsDone = make(chan struct{})
		go func() { n.joins.Wait(); close(joinsDone) }() // ends with the last join
	}
	if st.checker {
		if err := n.checker.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("mesh: stop health checks: %w", err))
		}
	}
	if st.resolver {
		if err := n.resolver.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("mesh: stop upstream resolver: %w", err))
		}
	}
	var dwg sync.WaitGroup
	var perr, derr error
	dwg.Go(func() { perr = n.proxy.Shutdown(sctx) })
	if st.data {
		dwg.Go(func() { derr = n.data.Shutdown(sctx) })
	}
	dwg.Wait()
	for _, e := range []error{perr, derr} {
		if e != nil && !errors.Is(e, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("mesh: drain: %w", e))
		}
	}
	if st.http {
		if err := n.stopAPI(sctx); err != nil {
			errs = append(errs, fmt.Errorf("mesh: stop local api: %w", err))
		}
	}
	if st.cluster {
		if err := n.cluster.Shutdown(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("mesh: stop gossip: %w", err))
		}
	}
	if joinsDone != nil {
		select {
		case <-joinsDone:
		case <-sctx.Done():
			n.log.Warn("stopped with joins still in flight; they end on their own within the gossip TCP timeout", "node", n.name)
		}
	}
	if st.running {
		n.log.Info("stopped", "node", n.name)
	}
	return errors.Join(errs...)
}
