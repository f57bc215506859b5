package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/nodename"
	"github.com/hashicorp/memberlist"
)

// Config configures a Cluster. Build one with DefaultConfig or
// DefaultLocalConfig and override fields; New copies it, so later changes
// to the value (or to the memberlist.Config it points to) have no effect,
// except through the shared Memberlist.Keyring (see Memberlist).
//
// Zero values: Cluster, BindAddr, Memberlist and Logger fall back to their
// defaults when zero; for the ports zero has the meaning given on the field.
type Config struct {
	// NodeName names this node in the cluster. Required; a valid node name
	// (internal/nodename) and unique within the cluster. A restarted node
	// may reuse its name.
	NodeName string

	// Cluster is the cluster name, sent as memberlist's Label on every
	// packet and stream, so nodes of different clusters never merge.
	// Default "ambassador" (also used when empty); at most 255 bytes.
	Cluster string

	// BindAddr is the IP the gossip UDP and TCP listeners bind to.
	// Default "0.0.0.0" (also used when empty).
	BindAddr string

	// BindPort is the gossip port (UDP and TCP). Default 7946; 0 picks a
	// free port (tests), see Cluster.GossipPort.
	BindPort int

	// AdvertiseAddr is the IP peers use to reach this node; it is also the
	// Addr of this node's Entry. Required when BindAddr is unspecified
	// (0.0.0.0 or ::); empty means BindAddr.
	AdvertiseAddr string

	// AdvertisePort is the gossip port peers use to reach this node.
	// Default 0, meaning the bound port. It only takes effect with a
	// non-zero BindPort: when BindPort is 0, memberlist overwrites it with
	// the port it picked.
	AdvertisePort int

	// DataPort is the TCP port where this node's ambassador accepts
	// forwarded connections; published in this node's Entry. 0 means none.
	DataPort int

	// Fingerprint is this node's data-plane TLS identity (the lowercase hex
	// SHA-256 of its certificate's public key, 64 characters), published in
	// this node's Entry so peers can pin it. Empty means none (no key).
	// It travels in gossip as-is, so it is only as trustworthy as the
	// gossip: set Keys when peers rely on it.
	Fingerprint string

	// Keys are the cluster keys, each 16, 24 or 32 bytes (AES-128, -192,
	// -256). When non-empty, gossip is encrypted and authenticated with
	// memberlist's Keyring: Keys[0] encrypts, every key decrypts (for
	// rotation), and unencrypted or undecryptable packets and streams are
	// dropped (GossipVerifyIncoming and GossipVerifyOutgoing), so nodes
	// without a shared key never merge. Empty means plain gossip, unless
	// Memberlist carries its own SecretKey or Keyring; setting both is an
	// error. New copies the keys; errors name the index, never a key.
	Keys [][]byte

	// Memberlist is the base memberlist profile: timers, retransmits,
	// compression, encryption keys. Nil means the DefaultConfig profile.
	// New copies the struct and its slices (SecretKey, CIDRsAllowed,
	// MetricLabels). Keyring is shared on purpose: it is how the caller
	// rotates keys (AddKey, UseKey, RemoveKey) in the running cluster, and
	// memberlist adds SecretKey to it and makes it the primary key. The
	// Transport and the delegates gossip does not set are shared too.
	//
	// gossip always overrides Name, BindAddr, BindPort, AdvertiseAddr,
	// AdvertisePort, Label, Delegate, Events, Conflict, Ping, Logger, LogOutput and
	// DeadNodeReclaimTime (set to ProbeInterval, see DefaultConfig); and,
	// when Keys is set, Keyring, GossipVerifyIncoming and
	// GossipVerifyOutgoing.
	// ProbeTimeout must be shorter than ProbeInterval.
	Memberlist *memberlist.Config

	// Logger receives gossip's logs and memberlist's, with component=gossip.
	// memberlist's "[LEVEL]" prefixes become slog levels, except that [ERR]
	// becomes Warn: memberlist uses it for network trouble that heals on its
	// own. Repeated Warn lines are logged at most once per 10s per kind,
	// with a count of the suppressed ones. Nil means slog.Default().
	Logger *slog.Logger
}

const (
	defaultCluster  = "ambassador"
	defaultBindAddr = "0.0.0.0"
	defaultPort     = 7946
)

// DefaultConfig returns the LAN profile: port 7946 on all interfaces and
// memberlist.DefaultLANConfig's timers, with Lifeguard:
//
//   - ProbeInterval 1s, ProbeTimeout 500ms, SuspicionMult 4,
//     SuspicionMaxTimeoutMult 6, AwarenessMaxMultiplier 8. A suspect is
//     declared dead after 4×ProbeInterval×log10(n) once enough peers
//     confirm the suspicion, up to six times that while they do not, so
//     one busy prober cannot kill a live node. (SuspicionMult 6 removed
//     the start-up failure marks of a 100-host lab on two cores but left
//     suspicions going on at 0.3-2 a second for the minute after, in both
//     runs of session 5; with 4, four runs had 0-5 suspicions in that
//     minute.) A node whose host or link goes down leaves every catalog
//     in about 7s at 25 nodes (measured in the scale lab); a node whose
//     process dies on a live host (SIGKILL) in about 2.5s, because its refused gossip port confirms the
//     suspicion at once (suspect.go). The profile used to probe every 500ms with a 250ms
//     timeout and SuspicionMult 2, which dropped a dead node in about 2s
//     but, on a 2-core lab of 100 nodes started together, marked live
//     nodes failed by the thousand: a probe that times out on a busy host
//     makes more gossip, which makes every host busier (issue 10). The data
//     plane skips an instance that refuses or does not answer at once, so
//     catalog removal need not race it.
//   - GossipInterval 200ms and PushPullInterval 30s. Every tick wakes the
//     process, and an idle node's CPU is mostly such wake-ups: the 100ms
//     this profile used cost twice as many for nothing while no change was
//     queued. A node's own record change does not wait for gossip: it is
//     also sent to every member at once (Cluster.SetServices).
//   - TCPTimeout 2s (LAN: 10s): a join or push/pull to a peer that does
//     not answer gives up after 2s.
//
// A dead node's name can be reclaimed from a new address one ProbeInterval
// after it was declared dead. AdvertiseAddr and NodeName must still be set.
// DefaultConfig does no network I/O and cannot fail; each call returns a
// fresh value.
func DefaultConfig() Config {
	mc := memberlist.DefaultLANConfig()
	// The hostname DefaultLANConfig fills in is overridden by NodeName.
	mc.Name = ""
	// TCPTimeout bounds a join and a push/pull (dial plus the whole
	// exchange). The LAN's 10s let one firewalled peer hold a join for
	// 10s; a LAN dial answers in a millisecond and even a 4 MiB state
	// moves in well under a second.
	mc.TCPTimeout = 2 * time.Second
	// No LZW compression of every packet: our packets (pings, acks, small
	// records) are a few hundred bytes at most, and compressing each one
	// allocated a fresh LZW writer and buffers, a visible share of an
	// idle node's CPU and garbage (perf, issue 10). Peers decompress what
	// is compressed and read the rest as is, so mixed versions interoperate.
	mc.EnableCompression = false
	return Config{
		Cluster:    defaultCluster,
		BindAddr:   defaultBindAddr,
		BindPort:   defaultPort,
		Memberlist: mc,
	}
}

// DefaultWANConfig returns DefaultConfig with memberlist.DefaultWANConfig
// timers, for nodes spread over links with real latency and loss: slower
// to declare a node dead (tens of seconds), far less prone to flapping.
func DefaultWANConfig() Config {
	cfg := DefaultConfig()
	mc := memberlist.DefaultWANConfig()
	mc.Name = ""
	cfg.Memberlist = mc
	return cfg
}

// DefaultLocalConfig returns DefaultConfig with fast timers for tests and
// netns labs, where round trips are well under a millisecond: based on
// memberlist.DefaultLocalConfig, it probes every 250ms with a 100ms
// timeout (so a crashed node is declared dead in about 1s), gossips every
// 50ms with the LAN retransmit multiplier (4), does a full push/pull every
// 5s, and forgets dead nodes after 5s. Each call returns a fresh value.
func DefaultLocalConfig() Config {
	cfg := DefaultConfig()
	mc := memberlist.DefaultLocalConfig()
	mc.Name = ""
	mc.ProbeInterval = 250 * time.Millisecond
	mc.ProbeTimeout = 100 * time.Millisecond
	mc.GossipInterval = 50 * time.Millisecond
	mc.PushPullInterval = 5 * time.Second
	mc.GossipToTheDeadTime = 5 * time.Second
	// memberlist's local profile halves the LAN's 4; with 2 transmits per
	// receiver an update can die out before reaching every node of a small
	// cluster and then waits for the next push/pull.
	mc.RetransmitMult = 4
	cfg.Memberlist = mc
	return cfg
}

// withDefaults fills zero fields and checks the result. It has no side
// effects, so callers can use it to validate a config without starting
// anything. The returned config owns a private copy of Memberlist.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Cluster == "" {
		cfg.Cluster = defaultCluster
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = defaultBindAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Memberlist == nil {
		cfg.Memberlist = DefaultConfig().Memberlist
	} else {
		cfg.Memberlist = copyMemberlist(cfg.Memberlist)
	}

	if err := nodename.Check(cfg.NodeName); err != nil {
		return cfg, fmt.Errorf("gossip: config: NodeName %w", err)
	}
	if len(cfg.Cluster) > memberlist.LabelMaxSize {
		return cfg, fmt.Errorf("gossip: config: Cluster %q is longer than %d bytes", cfg.Cluster, memberlist.LabelMaxSize)
	}
	bind, err := netip.ParseAddr(cfg.BindAddr)
	if err != nil {
		return cfg, fmt.Errorf("gossip: config: BindAddr %q is not an IP", cfg.BindAddr)
	}
	if cfg.AdvertiseAddr != "" {
		adv, err := netip.ParseAddr(cfg.AdvertiseAddr)
		if err != nil {
			return cfg, fmt.Errorf("gossip: config: AdvertiseAddr %q is not an IP", cfg.AdvertiseAddr)
		}
		if adv.IsUnspecified() {
			return cfg, fmt.Errorf("gossip: config: AdvertiseAddr %q is unspecified", cfg.AdvertiseAddr)
		}
	} else if bind.IsUnspecified() {
		// memberlist would guess a private interface address; we want the
		// operator to say which one peers can reach.
		return cfg, fmt.Errorf("gossip: config: AdvertiseAddr is required when BindAddr is %q", cfg.BindAddr)
	}
	for _, p := range []struct {
		name string
		val  int
	}{{"BindPort", cfg.BindPort}, {"AdvertisePort", cfg.AdvertisePort}, {"DataPort", cfg.DataPort}} {
		if p.val < 0 || p.val > 65535 {
			return cfg, fmt.Errorf("gossip: config: %s %d is out of range 0-65535", p.name, p.val)
		}
	}
	if cfg.Fingerprint != "" && !validFingerprint(cfg.Fingerprint) {
		return cfg, fmt.Errorf("gossip: config: Fingerprint %q is not 64 lowercase hex digits", cfg.Fingerprint)
	}
	mc := cfg.Memberlist
	if len(cfg.Keys) > 0 {
		if mc.Keyring != nil || len(mc.SecretKey) > 0 {
			return cfg, errors.New("gossip: config: Keys and Memberlist.SecretKey or Memberlist.Keyring are both set; use one")
		}
		keys := make([][]byte, len(cfg.Keys))
		for i, k := range cfg.Keys {
			if n := len(k); n != 16 && n != 24 && n != 32 {
				return cfg, fmt.Errorf("gossip: config: Keys[%d] is %d bytes, want 16, 24 or 32", i, n)
			}
			keys[i] = slices.Clone(k)
		}
		cfg.Keys = keys
		// A keyring of our own, not shared with the caller: Keys is the
		// whole key configuration.
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return cfg, fmt.Errorf("gossip: config: Keys: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	if mc.ProbeInterval <= 0 {
		return cfg, fmt.Errorf("gossip: config: Memberlist.ProbeInterval %v must be > 0", mc.ProbeInterval)
	}
	if mc.ProbeTimeout <= 0 || mc.ProbeTimeout >= mc.ProbeInterval {
		return cfg, fmt.Errorf("gossip: config: Memberlist.ProbeTimeout %v must be > 0 and < ProbeInterval %v", mc.ProbeTimeout, mc.ProbeInterval)
	}
	return cfg, nil
}

// Framing memberlist adds around a broadcast in a gossip packet (its
// unexported compoundHeaderOverhead, compoundOverhead and userMsgOverhead),
// and the worst-case cost of encryption (version 0: 45 bytes).
const (
	packetOverhead  = 2 + 2 + 1
	encryptOverhead = 45
)

// maxBroadcast returns the largest encoded record memberlist can send in a
// gossip packet: UDPBufferSize minus framing, the label (Cluster) and, when
// keys are configured, encryption. Compression happens after memberlist
// packs the packet, so it does not help.
func (cfg Config) maxBroadcast() int {
	mc := cfg.Memberlist
	n := mc.UDPBufferSize - packetOverhead
	if cfg.Cluster != "" {
		n -= 2 + len(cfg.Cluster)
	}
	if mc.Keyring != nil || len(mc.SecretKey) > 0 {
		n -= encryptOverhead
	}
	return n
}

// copyMemberlist returns a copy of mc that shares no slice with it. Keyring
// stays shared, see Config.Memberlist.
func copyMemberlist(mc *memberlist.Config) *memberlist.Config {
	c := *mc
	c.SecretKey = slices.Clone(mc.SecretKey)
	c.MetricLabels = slices.Clone(mc.MetricLabels)
	if mc.CIDRsAllowed != nil {
		c.CIDRsAllowed = make([]net.IPNet, len(mc.CIDRsAllowed))
		for i, n := range mc.CIDRsAllowed {
			c.CIDRsAllowed[i] = net.IPNet{IP: slices.Clone(n.IP), Mask: slices.Clone(n.Mask)}
		}
	}
	return &c
}

// advertiseIP is the address this node publishes in its Entry.
func (cfg Config) advertiseIP() string {
	if cfg.AdvertiseAddr != "" {
		return cfg.AdvertiseAddr
	}
	return cfg.BindAddr
}

// memberlistConfig returns a fresh memberlist.Config with gossip's
// overrides applied; memberlist.Create writes the bound port back into it.
func (cfg Config) memberlistConfig(d *delegate, l *slog.Logger) *memberlist.Config {
	mc := *cfg.Memberlist
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		// memberlist only fills in the bound port when BindPort is 0.
		mc.AdvertisePort = cfg.BindPort
	}
	mc.Label = cfg.Cluster
	mc.Delegate = d
	mc.Events = d
	mc.Conflict = d
	mc.Alive = d // the node name rule, see NotifyAlive
	mc.Ping = d  // member-count digests, see digest.go
	mc.LogOutput = nil
	mc.Logger = newStdLogger(l)
	// A node restarted on a new address (DHCP renewal, port 0 in tests)
	// must get its name back. memberlist only reclaims a name whose owner
	// is already dead, i.e. missed probes for ProbeTimeout and then
	// SuspicionMult×ProbeInterval without refuting, so one more probe
	// interval is enough margin for in-flight alive messages of the old
	// incarnation; waiting longer only delays the restarted node.
	mc.DeadNodeReclaimTime = mc.ProbeInterval
	return &mc
}
