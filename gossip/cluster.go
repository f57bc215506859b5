// Package gossip keeps track of the nodes of an ambassador cluster and of
// the services each node hosts. Membership and failure detection come from
// hashicorp/memberlist; the service catalog rides on memberlist's
// broadcasts and push/pull state syncs, not on node metadata.
//
// Each node owns one catalog record (Entry) whose Version only grows. Peers
// keep the highest version per node and show a record only while
// memberlist considers its node alive, so a node that leaves or fails
// disappears from every catalog with its services.
package gossip

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/hashicorp/memberlist"
)

// Service is a service a node announces.
type Service struct {
	Name svcname.Name `json:"name"`
	Port int          `json:"port"` // client-facing port
	// Weight is this instance's share of new connections relative to
	// other instances of the service. 0 (omitted on the wire) means 1.
	Weight int `json:"weight,omitempty"`
}

// Entry is one node's record in the catalog.
type Entry struct {
	Node     string    `json:"node"`
	Addr     string    `json:"addr"` // IP memberlist reaches the node at; see Cluster.Catalog
	DataPort int       `json:"data_port"`
	Services []Service `json:"services"` // sorted by Name
	Version  uint64    `json:"version"`
	// Down are the services the node announces that do not pass their
	// health check now, sorted by Name and never in Services: nobody
	// routes to them, but a peer can tell a service whose check failed
	// (it moves from Services to Down) from one that was withdrawn.
	// Nodes that predate the field ignore it.
	Down []Service `json:"down,omitempty"`
	// Fingerprint is the node's data-plane TLS fingerprint (see
	// Config.Fingerprint): empty or 64 lowercase hex digits.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Member is a node as memberlist sees it.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	Port  int    `json:"port"`
	State string `json:"state"` // "alive", "suspect", "dead" or "left"; see Cluster.Members
}

// Member states.
const (
	stateAlive   = "alive"
	stateSuspect = "suspect"
	stateDead    = "dead"
	stateLeft    = "left"
)

// maxLeaveWait bounds Leave when its context has no deadline.
const maxLeaveWait = 10 * time.Second

// maxPending bounds the records kept for nodes memberlist has not reported
// yet. Such a record legitimately arrives only in the short window before
// its node's alive message, so a few are plenty; a peer sending records for
// made-up names must not grow memory without bound.
const maxPending = 256

// Broadcast queue bound, see queue: per alive node a few records can be in
// flight, plus room for this node's own and those of dead nodes.
const (
	queuePerNode = 4
	queueExtra   = 64
)

// Cluster is this node's membership in the gossip cluster and its view of
// the catalog. All methods are safe for concurrent use. The lifecycle is
// New → Start → Join (any number of times) → Leave → Shutdown.
type Cluster struct {
	cfg       Config        // set in New, read-only afterwards
	log       *slog.Logger  // set in New, read-only afterwards
	started   time.Time     // set in New, read-only afterwards; gossiped as node metadata
	changed   chan struct{} // 1-buffered, see Changed
	conflicts chan Member   // 1-buffered, see Conflicts
	bcast     *broadcasts   // records queued for gossip, see relay.go
	reap      time.Duration // how long dead members are remembered
	pruneAt   time.Time     // pruneLocked does nothing before (guarded by mu)
	// maxBcast is the largest encoded record that fits in a gossip packet;
	// larger ones are not queued and travel only by push/pull.
	maxBcast int

	warnedSize atomic.Bool // SetServices warned that our record is too big
	// logLimit rate-limits Warn and Error lines that network input can
	// repeat, by key.
	logLimit *limiter
	// wantLimit: answers to record requests from nodes that are not
	// members here yet, one per wantEvery per address (want.go).
	wantLimit *limiter
	// joinLimit: joins of nodes that greeted this one, one per
	// greetJoinEvery per address; greetJoins: how many run (greet.go).
	joinLimit  *limiter
	greetJoins atomic.Int32
	// onGreet, when a test sets it before Start, sees every greeting this
	// node sends (greet.go): a test proves that a member was not greeted
	// without waiting for something not to arrive.
	onGreet func(to string, greets bool)

	numAlive   atomic.Int64 // alive members incl. self, for bcast; counted by memberUp and memberDown (written under mu)
	gossipPort atomic.Int64 // set in Start

	// Suspects, see suspect.go. table is set in Start, nil when
	// memberlist's layout is unknown; lastScan is the UnixNano of the last
	// scan; checks tracks confirmSuspect dials, which stopCtx ends.
	table    atomic.Pointer[nodeTable]
	lastScan atomic.Int64
	lastWant atomic.Int64 // UnixNano of the last askMissing check
	// recordsComplete: every alive member has a record here (want.go).
	// Stored under mu.
	recordsComplete atomic.Bool
	scanEvery       time.Duration  // set in New, read-only afterwards
	calm            atomic.Bool    // no member flagged suspect or refused; stored under mu
	coin            func() float64 // rand.Float64; a test's fixed coin for the suspect dials
	checks          sync.WaitGroup
	digest          digest // see digest.go
	stopCtx         context.Context
	stop            context.CancelFunc

	// wg tracks the Leave call into memberlist, so Shutdown never runs
	// concurrently with it: memberlist panics on Leave after Shutdown. Join
	// is not tracked: memberlist cannot cancel it, a join to an unresponsive
	// address blocks for TCPTimeout, and a Join racing or following Shutdown
	// only fails. Go is only called with lifeMu held and closed false.
	wg sync.WaitGroup

	// keyMu makes SetKeys calls one at a time; the keyring locks itself.
	keyMu sync.Mutex

	// advMu guards advertising (an advertiseRounds goroutine runs) and
	// advertiseAgain (a readvertise came while it ran), see readvertise.
	// Lock order: advMu before lifeMu.
	advMu          sync.Mutex
	advertising    bool
	advertiseAgain bool

	// lifeMu guards the lifecycle fields below. It is never held across
	// network I/O. Lock order: lifeMu before mu.
	lifeMu sync.Mutex
	ml     *memberlist.Memberlist
	// own is ml's transport when it is ours (nil: Config.Memberlist
	// brought one); Shutdown ends its streams (abortStreams).
	own      *transport
	starting bool // Start was called
	left     bool // Leave was called
	closed   bool // Shutdown was called

	// mu guards the catalog and member view below. memberlist's delegates
	// take it, so it is held only briefly and never across I/O, channel
	// sends or calls into memberlist.
	mu      sync.Mutex
	self    record
	records map[string]*stored // other nodes memberlist reported, by name
	raw     map[string]string  // the broadcast of a stored record -> its node (dedup.go)
	pending map[string]*stored // nodes memberlist did not report (yet), at most maxPending
	members map[string]*member // as reported by memberlist, incl. self
	// plainAlive counts the alive members whose metadata lacks
	// metaStateFlate (member.flate false): older releases, which drop a
	// compressed push/pull state. memberlist's LocalState does not say
	// whom the state goes to, and a periodic push/pull's partner is any
	// alive member, so a node compresses only while this is 0: during a
	// rolling upgrade every node sends plain states until the last old
	// node is gone. memberUp, memberMeta and memberDown keep it, so
	// pushState reads the answer under the lock it takes anyway.
	plainAlive int
	// served: what this node's metadata last said (metaServes, see
	// NodeMeta); SetServicesDown re-advertises the node when it changes.
	served bool
	// joining counts the joins running per address ("ip:port" as
	// netip.AddrPort prints it), see joiningAddrs.
	joining map[string]int
}

type stored struct {
	rec  record
	seen time.Time
	// raw is the broadcast rec arrived in, the key of Cluster.raw; empty
	// for a record that came by push/pull or from pending (dedup.go).
	raw string
}

type member struct {
	Member
	since time.Time
	// started: the node's own start time from its metadata (zero: not
	// known, an older release); see missing. offer: what its metadata
	// says of its record (want.go).
	started time.Time
	offer   offer
	// suspect: memberlist holds this alive member suspect (State stays
	// stateAlive; Members reports it as stateSuspect). refused: and its
	// gossip port refused a connection, so Catalog hides its services.
	// Both are cleared when memberlist reports the member up or down.
	suspect bool
	refused bool
	// refusedAt: when refused was set; confirmed: memberlist has held the
	// member suspect since; hintAt: the last peer message that made this
	// node dial it (see refusedHint).
	refusedAt time.Time
	confirmed bool
	hintAt    time.Time
	// wantAt: when this node last asked the member for its record;
	// answeredAt: when it last answered the member's request (want.go).
	wantAt     time.Time
	answeredAt time.Time
	// recheckAt: when memberlist held the member alive again after
	// holding it dead, left or suspect, and recheckVersion: the version
	// of its record here then, which may be older than its own (see
	// recheckLocked in want.go). Zero: nothing to recheck.
	recheckAt      time.Time
	recheckVersion uint64
	// greets: its metadata said it knows kindGreet when it came up
	// (metaGreets, greet.go).
	greets bool
	// flate: its metadata says it reads kindStateFlate (metaStateFlate);
	// memberUp and memberMeta record it; counted in Cluster.plainAlive.
	flate bool
}

// New validates cfg and returns a Cluster that is not yet on the network.
// It copies cfg (including *cfg.Memberlist), starts no goroutines and opens
// nothing, so an unused Cluster needs no cleanup. Errors name the field and
// the bad value.
func New(cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "gossip"),
		started:   time.Now(),
		changed:   make(chan struct{}, 1),
		conflicts: make(chan Member, 1),
		reap:      max(cfg.Memberlist.GossipToTheDeadTime, time.Second),

		maxBcast:  cfg.maxBroadcast(),
		logLimit:  newLimiter(logInterval),
		wantLimit: newLimiter(wantEvery),
		joinLimit: newLimiter(greetJoinEvery),
		self: record{Entry: Entry{
			Node:        cfg.NodeName,
			Addr:        cfg.advertiseIP(),
			DataPort:    cfg.DataPort,
			Fingerprint: cfg.Fingerprint,
			Version:     nextVersion(0, time.Now()),
		}},
		records: make(map[string]*stored),
		raw:     make(map[string]string),
		pending: make(map[string]*stored),
		members: make(map[string]*member),
		joining: make(map[string]int),
	}
	c.bcast = newBroadcasts(cfg.Memberlist.RetransmitMult, func() int { return int(max(c.numAlive.Load(), 1)) })
	// A quarter probe interval: a suspicion lasts several.
	c.scanEvery = cfg.Memberlist.ProbeInterval / 4
	c.coin = rand.Float64
	c.digest.persist = digestPersistProbes * cfg.Memberlist.ProbeInterval
	c.digest.cooldown = digestCooldownProbes * cfg.Memberlist.ProbeInterval
	c.stopCtx, c.stop = context.WithCancel(context.Background())
	return c, nil
}

// Start binds the gossip listeners and starts memberlist. It does not
// contact any peer; see Join. It may be called once; if it fails nothing is
// left open and the Cluster can only be shut down.
func (c *Cluster) Start() error {
	c.lifeMu.Lock()
	switch {
	case c.closed:
		c.lifeMu.Unlock()
		return fmt.Errorf("gossip: start: %w", net.ErrClosed)
	case c.starting:
		c.lifeMu.Unlock()
		return errors.New("gossip: start: already started")
	}
	c.starting = true
	c.lifeMu.Unlock()

	listen := net.JoinHostPort(c.cfg.BindAddr, strconv.Itoa(c.cfg.BindPort))
	// memberlist.Create shuts its transport down when it fails after
	// binding, except on a too-long label or an unusable advertise address,
	// both of which New rejects.
	mc := c.cfg.memberlistConfig(&delegate{c: c}, c.log)
	var own *transport
	if mc.Transport == nil {
		// Ours, not memberlist's NetTransport: see transport.
		var err error
		if own, err = newTransport(c.cfg.BindAddr, c.cfg.BindPort, c.log); err != nil {
			return fmt.Errorf("gossip: start on %s: %w", listen, err)
		}
		mc.Transport = own
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		if own != nil {
			_ = own.Shutdown() // memberlist does not always shut a given transport down
		}
		return fmt.Errorf("gossip: start on %s: %w", listen, err)
	}

	c.lifeMu.Lock()
	if c.closed {
		// Shutdown ran while we were binding.
		c.lifeMu.Unlock()
		_ = ml.Shutdown()
		return fmt.Errorf("gossip: start: %w", net.ErrClosed)
	}
	c.ml, c.own = ml, own
	c.lifeMu.Unlock()
	c.mu.Lock()
	readvertise := c.served != c.servesLocked() // services set while Create ran
	c.mu.Unlock()
	if readvertise {
		c.readvertise()
	}
	if t, err := newNodeTable(ml); err != nil {
		c.log.Warn("suspect members are reported alive, and a crashed node leaves the catalog only when memberlist declares it dead", "err", err)
	} else {
		c.table.Store(t)
	}

	port := int(ml.LocalNode().Port)
	c.gossipPort.Store(int64(port))
	c.log.Info("gossip listening", "listen", listen, "node", c.cfg.NodeName,
		"advertise", net.JoinHostPort(c.cfg.advertiseIP(), strconv.Itoa(port)), "cluster", c.cfg.Cluster)
	return nil
}

// Join contacts each host:port in addrs, exchanges full state with it and
// returns how many succeeded. It fails only if none did. It blocks for up
// to the memberlist TCPTimeout per address and may be called any number of
// times after Start; joining a node already in the cluster is harmless.
// Shutdown does not wait for a running Join; it ends the Join's stream
// (with this node's own transport), and the Join then fails. After
// Shutdown it returns an error matching net.ErrClosed.
func (c *Cluster) Join(addrs []string) (int, error) {
	c.lifeMu.Lock()
	switch {
	case c.closed:
		c.lifeMu.Unlock()
		return 0, fmt.Errorf("gossip: join: %w", net.ErrClosed)
	case c.ml == nil:
		c.lifeMu.Unlock()
		return 0, errors.New("gossip: join: not started")
	}
	ml := c.ml
	c.lifeMu.Unlock()

	done := c.joiningAddrs(addrs)
	n, err := ml.Join(addrs)
	done()
	if err != nil {
		return n, fmt.Errorf("gossip: join %q: %w", addrs, err)
	}
	c.log.Info("joined cluster", "peers", n)
	return n, nil
}

// SetServices replaces this node's services, bumps its record's version
// and broadcasts it. It may be called at any time, also before Start;
// setting the same services again does nothing. The slice is copied.
// Services with an empty or over-long name, a port outside 1-65535, or a
// name already listed (in any case: names compare case-insensitively) are
// dropped with a Warn log. A record too large for
// one gossip packet (memberlist's UDPBufferSize, 1400 bytes by default:
// roughly 30 services with short names) is not broadcast but still reaches
// every peer by push/pull; the first time that happens it logs a Warn.
func (c *Cluster) SetServices(svcs []Service) { c.SetServicesDown(svcs, nil) }

// SetServicesDown is SetServices that also publishes down, the services
// this node announces that fail their health check now (Entry.Down). A
// name in both lists counts as up. Safe for concurrent use.
func (c *Cluster) SetServicesDown(svcs, down []Service) {
	clean := c.cleanServices(svcs, nil)
	cleanDown := c.cleanServices(down, clean)

	c.mu.Lock()
	if slices.Equal(c.self.Services, clean) && slices.Equal(c.self.Down, cleanDown) {
		c.mu.Unlock()
		return
	}
	greeting := len(c.self.Services) > 0 // memberUp greets new members
	c.self.Services, c.self.Down = clean, cleanDown
	c.self.Version = nextVersion(c.self.Version, time.Now())
	r := c.self.clone()
	readvertise := c.served != c.servesLocked()
	var late []greetee
	if !greeting && len(r.Services) > 0 && !r.Left {
		late = c.ungreetedLocked(time.Now())
	}
	c.mu.Unlock()
	if readvertise {
		c.readvertise()
	}
	for _, g := range late {
		c.greet(g.to, r, g.greets)
	}

	// Queued even before Start: the queue keeps one record per node and
	// memberlist drains it once it runs.
	if size, ok := c.queue(r, false); !ok && c.warnedSize.CompareAndSwap(false, true) {
		c.log.Warn("this node's catalog record is too large for a gossip packet; it spreads only by push/pull, so peers see changes up to a push/pull interval late",
			"bytes", size, "limit", c.maxBcast, "services", len(r.Services))
	}
	c.pushSelf(r)
	c.notify()
}

// cleanServices returns svcs valid, without duplicates or names in
// except, within maxServices, sorted; nil when empty. Names compare
// case-insensitively, as validateRecord compares them: a record naming
// one service in two cases is refused by every peer, and with it the
// node's whole push/pull state. It logs what it drops.
func (c *Cluster) cleanServices(svcs, except []Service) []Service {
	clean := make([]Service, 0, len(svcs))
	seen := make(map[svcname.Name]bool, len(svcs)+len(except))
	for _, s := range except {
		seen[s.Name.Lower()] = true
	}
	for _, s := range svcs {
		if err := checkService(s); err != nil {
			c.log.Warn("ignoring invalid service", "service", s.Name, "err", err)
			continue
		}
		if seen[s.Name.Lower()] {
			c.log.Warn("ignoring duplicate service", "service", s.Name, "port", s.Port)
			continue
		}
		if len(clean) == maxServices {
			c.log.Warn("ignoring service beyond the limit", "service", s.Name, "limit", maxServices)
			continue
		}
		seen[s.Name.Lower()] = true
		clean = append(clean, s)
	}
	sortServices(clean)
	if len(clean) == 0 {
		clean = nil
	}
	return clean
}

// Catalog returns the records of this node and of every node memberlist
// currently considers alive, sorted by Node, except suspect nodes whose
// gossip port refused this node's connection (their process is gone, see
// suspect.go). Each Entry's Addr is the
// address memberlist has for the node, which its probes confirm, not the
// one the node put in its record; only this node's entry before Start uses
// the configured advertise address. The result is a deep copy the caller
// owns. After Leave this node's own record is not included.
func (c *Cluster) Catalog() []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(time.Now())
	out := make([]Entry, 0, len(c.records)+1)
	if !c.self.Left {
		out = append(out, c.entryLocked(c.self))
	}
	for name, s := range c.records {
		if m, ok := c.members[name]; ok && m.State == stateAlive && !m.refused && !s.rec.Left {
			out = append(out, c.entryLocked(s.rec))
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// entryLocked returns a deep copy of r's Entry with the address memberlist
// has for the node, falling back to r's own when memberlist has none.
func (c *Cluster) entryLocked(r record) Entry {
	e := r.clone().Entry
	if m, ok := c.members[e.Node]; ok && m.Addr != "" {
		e.Addr = m.Addr
	}
	return e
}

// Members returns every node memberlist has reported, including this one,
// sorted by Name. State is "alive", "suspect" (missed probes; declared
// dead unless it refutes in time), "dead" (failed) or "left" (graceful);
// dead and left nodes are forgotten after memberlist's GossipToTheDeadTime.
// memberlist v0.7.0 does not tell its users about suspects: the state is
// read from its node table (nodetable.go), a quarter probe interval late
// at most while gossip ticks. Empty before Start.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(time.Now())
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		mm := m.Member
		if mm.State == stateAlive && m.suspect {
			mm.State = stateSuspect
		}
		out = append(out, mm)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Alive reports whether name is an alive member (this node included).
// Cheaper than Members for one name: discovery asks for every peer it
// sees. Safe for concurrent use.
func (c *Cluster) Alive(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[name]
	return ok && m.State == stateAlive
}

// Known reports whether memberlist has reported name in any state
// (alive, suspect, dead or left, until dead and left members are
// forgotten, see Members). A known node needs no join from discovery:
// memberlist's own gossip and push/pull bring it back when it refutes a
// failure, and a join to it costs a full state exchange. Safe for
// concurrent use.
func (c *Cluster) Known(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(time.Now())
	_, ok := c.members[name]
	return ok
}

// SetKeys replaces the cluster keys of a running, encrypted cluster
// without a restart: keys[0] becomes the key that encrypts, every key in
// keys decrypts, and keys not in the list are dropped. This is memberlist's
// keyring rotation (AddKey, UseKey, RemoveKey), done in that order so that
// no moment holds fewer keys than both the old and the new list agree on.
// A cluster started without Keys cannot start encrypting, nor an
// encrypted one stop: both change what every peer must send, and take a
// restart. Errors name the index of a bad key, never the key.
//
// memberlist v0.7.0's RemoveKey shifts the ring's slice in place when the
// key it removes is not the last one, while packet decryption reads that
// slice without the ring's lock: a packet arriving at that moment may be
// tried against a shifted list and miss the key being removed, which by
// the last step of a rotation nobody encrypts with any more. (The README's
// rotation only ever removes the last key, which writes nothing.)
func (c *Cluster) SetKeys(keys [][]byte) error {
	kr := c.cfg.Memberlist.Keyring
	if kr == nil || len(c.cfg.Keys) == 0 {
		return errors.New("gossip: set keys: this cluster runs without keys; encrypting takes a restart")
	}
	if len(keys) == 0 {
		return errors.New("gossip: set keys: no keys; running without encryption takes a restart")
	}
	for i, k := range keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("gossip: set keys: key %d is %d bytes, want 16, 24 or 32", i, n)
		}
	}
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	for i, k := range keys {
		if err := kr.AddKey(slices.Clone(k)); err != nil {
			return fmt.Errorf("gossip: set keys: add key %d: %w", i, err)
		}
	}
	if err := kr.UseKey(slices.Clone(keys[0])); err != nil { // the ring keeps the slice it is given
		return fmt.Errorf("gossip: set keys: use key 0: %w", err)
	}
	for _, old := range slices.Clone(kr.GetKeys()) { // RemoveKey shifts the ring's own slice
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, old) }) {
			if err := kr.RemoveKey(old); err != nil {
				return fmt.Errorf("gossip: set keys: remove an old key: %w", err)
			}
		}
	}
	return nil
}

// NumMembers returns the number of alive members including this node,
// suspect ones included (see Members); 0 before Start. It does not block.
func (c *Cluster) NumMembers() int {
	return int(c.numAlive.Load())
}

// LocalNode returns this node's name.
func (c *Cluster) LocalNode() string {
	return c.cfg.NodeName
}

// GossipPort returns the gossip port this node advertises: the bound port,
// or AdvertisePort when it is set together with a non-zero BindPort; 0
// before Start.
func (c *Cluster) GossipPort() int {
	return int(c.gossipPort.Load())
}

// Changed returns a channel with buffer 1 that receives a value after any
// change to the membership or the catalog. Sends never block: if the
// reader is slow, signals coalesce into the one buffered value, which costs
// nothing since readers re-read Catalog or Members. The channel is never
// closed; every call returns the same channel.
func (c *Cluster) Changed() <-chan struct{} {
	return c.changed
}

// Conflicts returns a channel with buffer 1 that receives the other node
// whenever a live node at another address that started before this one
// (see holdsName) claims this node's name: when this node joins and finds
// its name held, or at any later time, when two partitions that each had a
// node of that name heal. A node that started later claiming our name is
// only logged: it hears of the conflict too and is the one to give way.
// memberlist keeps the node it knew first and ignores the other, but both
// would keep gossiping catalog records for the one name, so a node that
// finds its name taken should give up once ConfirmName shows the other
// alive there (see mesh). Sends never block: while the
// buffered value is unread, later conflicts are dropped (memberlist logs
// each). The channel is never closed; every call returns the same one.
func (c *Cluster) Conflicts() <-chan Member {
	return c.conflicts
}

// nameConflict reports other, a node claiming this node's name, on
// Conflicts without blocking.
func (c *Cluster) nameConflict(other Member) {
	select {
	case c.conflicts <- other:
	default:
	}
}

// Leave gracefully leaves the cluster: it broadcasts this node's record
// marked as left (peers hide it at once) and memberlist's leave message,
// then blocks until the message went out, ctx is done, or maxLeaveWait
// (10s) passed when ctx has no deadline. The node keeps answering gossip
// until Shutdown, which must follow. Calling Leave again is a no-op; after
// Shutdown it returns an error matching net.ErrClosed.
func (c *Cluster) Leave(ctx context.Context) error {
	c.lifeMu.Lock()
	switch {
	case c.closed:
		c.lifeMu.Unlock()
		return fmt.Errorf("gossip: leave: %w", net.ErrClosed)
	case c.ml == nil:
		c.lifeMu.Unlock()
		return errors.New("gossip: leave: not started")
	case c.left:
		c.lifeMu.Unlock()
		return nil
	}
	c.left = true
	ml := c.ml

	c.mu.Lock()
	c.self.Left = true
	// Peers hide a left record's services anyway; without them, up and
	// down, the record always fits in a gossip packet. (With its down
	// services kept, a node leaving while some 40 of them failed their
	// checks sent no left record, and peers reported it failed.)
	c.self.Services, c.self.Down = nil, nil
	c.self.Version = nextVersion(c.self.Version, time.Now())
	r := c.self.clone()
	c.mu.Unlock()
	c.queue(r, false)

	timeout := maxLeaveWait
	if dl, ok := ctx.Deadline(); ok {
		// memberlist treats a timeout <= 0 as "wait forever".
		timeout = max(time.Until(dl), time.Millisecond)
	}
	done := make(chan error, 1)
	// memberlist.Leave cannot be canceled; the goroutine ends within
	// timeout, and Shutdown waits for it.
	c.wg.Go(func() { done <- ml.Leave(timeout) })
	c.lifeMu.Unlock()

	c.notify()
	c.log.Info("leaving cluster", "node", c.cfg.NodeName)
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("gossip: leave: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gossip: leave: %w", context.Cause(ctx))
	}
}

// Shutdown stops gossiping and closes the listeners. It waits for a
// running Leave to return first (at most its timeout), but not for Join.
// With this node's own transport (Config.Memberlist brings none) it first
// ends the streams this node opened, so that a peer that accepted one and
// never answers holds neither a Join nor Shutdown for TCPTimeout. Without a prior Leave, peers see
// this node fail instead of leave, and Shutdown logs a Warn. It is safe to
// call more than once and concurrently; calls after the first return an
// error matching net.ErrClosed. memberlist's own goroutines exit shortly
// after Shutdown returns; delegates may still run briefly and only touch
// in-memory state.
func (c *Cluster) Shutdown() error {
	c.lifeMu.Lock()
	if c.closed {
		c.lifeMu.Unlock()
		return fmt.Errorf("gossip: shutdown: %w", net.ErrClosed)
	}
	c.closed = true
	ml, left, own := c.ml, c.left, c.own
	c.lifeMu.Unlock()

	c.stop()
	if own != nil {
		// The checks goroutines may be in a join or a send that memberlist
		// bounds only by TCPTimeout: end their streams rather than wait.
		own.abortStreams()
	}
	c.checks.Wait()
	c.wg.Wait()
	if ml == nil {
		return nil
	}
	if !left {
		c.log.Warn("shutting down without leave; peers will detect a failure", "node", c.cfg.NodeName)
	}
	if err := ml.Shutdown(); err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	c.log.Info("gossip stopped", "node", c.cfg.NodeName)
	return nil
}

// merge applies remote records: per node the highest version wins. Newer
// records of nodes memberlist reported are re-broadcast so they spread
// epidemically; a member's first record here fewer times than an update
// (relay.go). Records of other nodes are kept aside, at most maxPending,
// and not passed on: they are either early (the node's alive message is on
// its way and the node will broadcast its record itself) or made up. A
// record for this node that beats ours (an older incarnation of us, or a
// node with our name) is refuted with a higher version.
//
// pushPull says rs came in a push/pull's state; which of its records are
// passed on is passOn's rule (relay.go).
func (c *Cluster) merge(rs []record, pushPull bool) { c.mergeRaw(rs, nil, pushPull) }

// mergeRaw is merge; raw, when set, is the broadcast that carried the one
// record of rs, remembered with it so that copies of the same broadcast
// are not decoded again (dedup.go).
func (c *Cluster) mergeRaw(rs []record, raw []byte, pushPull bool) {
	now := time.Now()
	var out []record
	var first []bool // out[i] is the first record of its member here (relay.go)
	changed := false

	c.mu.Lock()
	for i, r := range rs {
		if r.Node == c.self.Node {
			if r.Version > c.self.Version || (r.Version == c.self.Version && !r.equal(c.self)) {
				c.self.Version = nextVersion(r.Version, now)
				out = append(out, c.self.clone())
				first = append(first, false)
			}
			continue
		}
		if _, ok := c.members[r.Node]; !ok {
			c.addPendingLocked(r, now)
			continue
		}
		s, had := c.records[r.Node]
		if had && s.rec.Version >= r.Version {
			if raw != nil && s.raw == "" && s.rec.Version == r.Version && s.rec.equal(r) {
				c.rememberLocked(s, raw)
			}
			continue
		}
		c.storeLocked(&stored{rec: r, seen: now, raw: string(raw)})
		if q, f := passOn(r, had, pushPull, i == 0); q { // rs[0] of a push/pull is the peer's own (pushState)
			out = append(out, r)
			first = append(first, f)
		}
		if m, ok := c.members[r.Node]; ok {
			if m.State == stateAlive {
				changed = true
			} else if r.Left && m.State == stateDead {
				m.State = stateLeft
				changed = true
			}
		}
	}
	c.pruneLocked(now)
	c.mu.Unlock()

	for i, r := range out {
		if r.Node == c.cfg.NodeName {
			// Two nodes with one name refute each other for as long as both
			// run.
			if ok, suppressed := c.logLimit.allow("refute", now); ok {
				c.log.Warn("refuting a newer record for this node; duplicate node name or restarted node",
					"version", r.Version, "suppressed", suppressed)
			}
		}
		c.queue(r, first[i])
	}
	if changed {
		c.notify()
	}
}

// pushState returns this node's record, first (passOn relies on it), and
// those of alive members for a push/pull. Records of dead and left nodes
// are not passed on, except in a join's state (join), where they are what
// a restarted node needs: memberlist reads the joiner's state before it
// takes the joiner back in, so a node that left or failed and joins again
// is still dead or left here when this state is made. Its previous run's
// record, kept here until pruned, tells it the version to beat. Without
// it a node whose clock is behind its previous run (stepped back at
// boot) publishes lower versions than the one every peer keeps, which
// they ignore: its new services stayed hidden, or its old ones shown,
// until a periodic push/pull, 30 s or more, happened to bring it that
// record. flate reports whether every alive member reads a compressed
// state (plainAlive is 0), read under the same lock as the records.
func (c *Cluster) pushState(join bool) (rs []record, flate bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs = make([]record, 0, len(c.records)+1)
	rs = append(rs, c.self.clone())
	for name, s := range c.records {
		if m, ok := c.members[name]; ok && (join || m.State == stateAlive) {
			rs = append(rs, s.rec.clone())
		}
	}
	return rs, c.plainAlive == 0
}

// addPendingLocked keeps r, a record of a node memberlist has not
// reported, until NotifyJoin or pruneLocked. When maxPending are kept it
// evicts the oldest, so made-up names cannot pin stale entries.
func (c *Cluster) addPendingLocked(r record, now time.Time) {
	if p, ok := c.pending[r.Node]; ok {
		if p.rec.Version < r.Version {
			*p = stored{rec: r, seen: now}
		}
		return
	}
	if len(c.pending) >= maxPending {
		var oldest string
		var seen time.Time
		for name, p := range c.pending {
			if oldest == "" || p.seen.Before(seen) {
				oldest, seen = name, p.seen
			}
		}
		delete(c.pending, oldest)
	}
	c.pending[r.Node] = &stored{rec: r, seen: now}
}

// memberUp records a member as alive, and makes a record that arrived
// before memberlist reported the node its current one and passes it on,
// as merge does with a newer record of a known member. When many nodes
// start together a record often arrives before its node's alive message;
// kept aside silently, it stopped spreading there, and a node that joined
// later got it only from a push/pull (session 5: hosts of a 100-host lab
// listened for the announced service up to 8 s after joining).
//
// started is the node's start time from its metadata, zero when unknown;
// o is what its metadata says of its record; greets: it knows kindGreet
// (metaGreets), so this node greets it with its gossip address; flate: it
// reads a compressed push/pull state (metaStateFlate).
func (c *Cluster) memberUp(name, addr string, port int, started time.Time, o offer, greets, flate bool) {
	var promoted *record
	promotedFirst := false // see relay.go
	var greet *memberlist.Node
	var self record
	c.mu.Lock()
	m, ok := c.members[name]
	returning := ok && m.State != stateAlive // dead or left here: refuted, or restarted
	if !ok || m.State != stateAlive {
		c.numAlive.Add(1)
	} else if !m.flate {
		c.plainAlive-- // counted again below, by its new metadata
	}
	if !ok {
		m = &member{}
		c.members[name] = m
		if name != c.self.Node && len(c.self.Services) > 0 && !c.self.Left {
			greet = &memberlist.Node{Name: name, Addr: net.ParseIP(addr), Port: uint16(port)}
			self = c.self.clone()
			// A member this node is joining learns of it from that
			// join's push/pull: asking it to join (kindGreet) would
			// only cost both a second one (joiningAddrs).
			greets = greets && !c.joiningLocked(addr, port)
		}
	}
	if p, ok := c.pending[name]; ok {
		delete(c.pending, name)
		if s, ok := c.records[name]; !ok || s.rec.Version < p.rec.Version {
			c.storeLocked(p)
			r := p.rec.clone()
			promoted = &r
			promotedFirst = !ok && !r.Left
		}
	}
	m.Member = Member{Name: name, Addr: addr, Port: port, State: stateAlive}
	m.since = time.Now()
	m.started, m.offer, m.greets, m.flate = started, o, greets, flate
	if !flate {
		c.plainAlive++
	}
	if _, ok := c.records[name]; !ok && name != c.self.Node {
		c.recordsComplete.Store(false) // askMissing must look again
		c.wantBy(m.dueAt())            // missing may have put the next check off
	} else if returning {
		c.recheckLocked(name, m, m.since)
	}
	m.suspect, m.refused, m.confirmed = false, false, false
	c.mu.Unlock()
	if promoted != nil {
		c.queue(*promoted, promotedFirst)
	}
	if greet != nil {
		c.greet(greet, self, greets)
	}
	c.log.Debug("member alive", "peer", name, "addr", net.JoinHostPort(addr, strconv.Itoa(port)))
	c.notify()
}

// memberDown records a member as failed, or left if its last record said
// so (memberlist does not tell, see delegate.NotifyLeave); merge corrects
// the state when the left record arrives after memberlist's message. Its
// record is kept, hidden, until pruned, so a node wrongly declared
// dead that refutes comes back with its services without waiting for a
// push/pull.
func (c *Cluster) memberDown(name string) {
	now := time.Now()
	c.mu.Lock()
	m, ok := c.members[name]
	if !ok {
		m = &member{Member: Member{Name: name}}
		c.members[name] = m
	}
	if m.State == stateAlive {
		c.numAlive.Add(-1)
		if !m.flate {
			c.plainAlive--
		}
	}
	m.State = stateDead
	m.suspect, m.refused, m.confirmed = false, false, false
	if name == c.self.Node && c.self.Left {
		m.State = stateLeft
	} else if s, ok := c.records[name]; ok && s.rec.Left {
		m.State = stateLeft
	}
	m.since = now
	state := m.State
	c.mu.Unlock()
	c.log.Debug("member down", "peer", name, "state", state)
	c.notify()
}

// pruneLocked forgets members that have been dead or left for longer than
// c.reap with their records, and pending records of nodes memberlist did
// not report within c.reap. It walks both tables at most every
// c.reap/16 (2 s with LAN timers), so an entry lives up to that much
// longer: merge calls it for every gossip message, and at 400 simulated
// nodes walking every member each time was a fifth of all CPU.
func (c *Cluster) pruneLocked(now time.Time) {
	if now.Before(c.pruneAt) {
		return
	}
	c.pruneAt = now.Add(c.reap / 16)
	for name, m := range c.members {
		if m.State != stateAlive && now.Sub(m.since) > c.reap {
			delete(c.members, name)
			c.forgetLocked(name)
		}
	}
	for name, p := range c.pending {
		if now.Sub(p.seen) > c.reap {
			delete(c.pending, name)
		}
	}
}

// queue hands r to memberlist's broadcasts; first says r is the first
// record of another node here, passed on fewer times (relay.go). It
// returns r's encoded size and false if r was not queued because it can
// never fit in a gossip packet; the queue would keep it forever. Each
// queue holds one record per node (see broadcast), and it is pruned to
// queuePerNode per alive node plus queueExtra, dropping the most
// retransmitted first, so records of dead nodes cannot pile up.
func (c *Cluster) queue(r record, first bool) (int, bool) {
	b, err := encodeRecord(r)
	if err != nil {
		c.log.Error("encoding record", "peer", r.Node, "err", err)
		return 0, false
	}
	if len(b) > c.maxBcast {
		c.log.Debug("record too large to broadcast", "peer", r.Node, "bytes", len(b), "limit", c.maxBcast)
		return len(b), false
	}
	c.bcast.queue(&broadcast{node: r.Node, msg: b}, first, queuePerNode*c.bcast.NumNodes()+queueExtra)
	return len(b), true
}

// notify signals Changed without blocking.
func (c *Cluster) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// nextVersion returns a version above prev that also beats any version an
// earlier run of this node could have produced, assuming the clock did
// not go back. At math.MaxUint64 it saturates rather than wrap to 0, which
// would lose to every record peers hold; validateRecord keeps remote
// versions far below that.
func nextVersion(prev uint64, now time.Time) uint64 {
	ns := now.UnixNano()
	if ns > 0 && uint64(ns) > prev {
		return uint64(ns)
	}
	if prev == math.MaxUint64 {
		return prev
	}
	return prev + 1
}

// servesLocked reports whether this node's record carries services, up
// or down: what its metadata says (metaServes). c.mu must be held.
func (c *Cluster) servesLocked() bool {
	return (len(c.self.Services) > 0 || len(c.self.Down) > 0) && !c.self.Left
}

// readvertise sends this node's metadata again (memberlist's UpdateNode:
// an alive message with the next incarnation), from a goroutine Shutdown
// waits for, because whether it announces services changed (metaServes).
// Members that lack its record then ask for it at once, or stop asking
// early (want.go). Before Start, Create reads the metadata anyway.
//
// At most one UpdateNode runs at a time: memberlist's UpdateNode reads
// the local node's address without its lock while another UpdateNode's
// alive message writes it under the lock (memberlist v0.7.0,
// memberlist.go UpdateNode vs state.go aliveNode), so overlapping calls
// race. A request while one runs is folded into one more round after
// it, which reads the metadata as it is by then.
func (c *Cluster) readvertise() {
	c.advMu.Lock()
	defer c.advMu.Unlock()
	if c.advertising {
		c.advertiseAgain = true
		return
	}
	c.advertising = c.goWithMemberlist(c.advertiseRounds)
}

// advertiseRounds runs UpdateNode until no readvertise is pending or
// Shutdown has begun.
func (c *Cluster) advertiseRounds(ml *memberlist.Memberlist) {
	for {
		// The alive message is queued either way; the timeout only bounds
		// how long this goroutine waits to hear that it went out.
		if err := ml.UpdateNode(readvertiseWait); err != nil {
			c.log.Debug("re-advertise this node's metadata", "err", err)
		}
		c.advMu.Lock()
		again := c.advertiseAgain && c.stopCtx.Err() == nil
		c.advertiseAgain = false
		c.advertising = again
		c.advMu.Unlock()
		if !again {
			return
		}
	}
}

// readvertiseWait bounds each UpdateNode's wait in advertiseRounds, and
// so how long a folded request waits for its round; Shutdown waits for
// the rounds to end.
const readvertiseWait = time.Second

// memberMeta notes what member name's metadata now says of its record
// and whether it reads a compressed push/pull state (memberlist reports a
// metadata change of an alive member). A name the table lacks is
// ignored: memberlist reports updates only of nodes it holds alive or
// suspect, which memberUp recorded and pruneLocked never forgets (it
// forgets only members down for longer than reap).
func (c *Cluster) memberMeta(name string, o offer, flate bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[name]
	if !ok {
		return
	}
	if m.State == stateAlive && m.flate != flate {
		if flate {
			c.plainAlive--
		} else {
			c.plainAlive++
		}
	}
	m.flate = flate
	if m.offer == o {
		return
	}
	m.offer = o
	if _, ok := c.records[name]; !ok && name != c.self.Node {
		c.wantBy(m.dueAt())
	}
}
