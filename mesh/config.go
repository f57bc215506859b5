package mesh

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ambassador-mesh/ambassador/creds"
	"github.com/ambassador-mesh/ambassador/gossip"
	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/nodename"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/trust"
)

// Config describes one node. The zero value of a field means "use the
// default" only where the comment says so; DefaultConfig fills in the rest.
type Config struct {
	// Node is this node's name in the cluster and its mDNS instance name.
	// "" = the host name plus 16 hex digits hashed from the advertise
	// address and gossip port, so that cloned hosts with one host name
	// still get distinct names (in the operator-CA mode: the NODE of the
	// certificate's URI SAN). Run fails when, within 30s of starting, the
	// node finds its name held by a live member at another address.
	Node string
	// Cluster separates meshes that share a LAN: it is the memberlist
	// label and a TXT field in discovery. Default "ambassador".
	Cluster string
	// Interfaces for mDNS; empty = every up, multicast-capable,
	// non-loopback interface with an IPv4 address.
	Interfaces []string
	// Bind is the IP this node advertises to its peers and the only
	// address its gossip and data ports listen on. "" = advertise the
	// first IPv4 address of the first usable interface and listen on
	// every interface (0.0.0.0), so that a node whose address changes, or
	// that peers reach on several networks, still answers without a
	// restart.
	Bind string
	// GossipPort is memberlist's TCP and UDP port. Default 7946.
	GossipPort int
	// DataPort is where peers hand connections to this node's services.
	// Default 7947.
	DataPort int
	// HTTP is the listen address of the status address: read-only
	// documents, for requests whose Host is this address, localhost or an
	// IP literal. Default 127.0.0.1:7948; "" = off.
	HTTP string
	// Socket is the path of the control socket, a Unix socket that serves
	// the status documents and the only endpoints that change the node
	// (announce, drain), to root and the node's own user only (checked
	// with SO_PEERCRED on Linux, LOCAL_PEERCRED on darwin and FreeBSD;
	// other systems refuse every change). The folder is made if missing.
	// "" = no control socket; the CLI's default is DefaultSocket (none on
	// Windows, see SocketSupported).
	Socket string
	// Join lists static seeds (HOST[:PORT], port defaulting to GossipPort)
	// for networks that multicast does not reach.
	Join []string
	// NoMDNS turns discovery and DNS-SD advertisement off.
	NoMDNS bool
	// Announce lists the services this node hosts.
	Announce []Announce
	// Forward limits forwarding to these services; empty = every service
	// in the catalog.
	Forward []Forward
	// Balance picks the load-balancing policy per service name (lower
	// case): least-conn (the default), round-robin, random or first.
	Balance map[svcname.Name]string
	// Checks picks the health check per announced service name (lower
	// case); a service without one gets a TCP connect. Kind "none" turns
	// checking off for that service.
	Checks map[svcname.Name]health.Check
	// CheckInterval is the time between two checks of one service.
	// Default 2s.
	CheckInterval time.Duration
	// CheckTimeout bounds one check; at most CheckInterval. Default 1s.
	CheckTimeout time.Duration
	// Upstream lists services outside the mesh that this node resolves
	// through DNS and offers to the cluster.
	Upstream []Upstream
	// Resolvers are the DNS servers (IP[:PORT]) for upstreams; empty =
	// the nameservers of /etc/resolv.conf.
	Resolvers []string
	// Credentials log in to a service on the application's behalf
	// before its connection is passed on (redis AUTH, postgres SCRAM or
	// md5, HTTP Authorization). Files are read at New and on Reload.
	Credentials []creds.Spec
	// Keys are cluster keys, base64 of 16, 24 or 32 bytes. The first
	// encrypts gossip, all decrypt it (for rotation); with any key,
	// connections between ambassadors are TLS 1.3 with mutual
	// authentication pinned to the fingerprints members gossip (with
	// TLSCA, authenticated by the operator's CA instead). Empty = gossip
	// is not encrypted, nor is the data plane without TLSCA.
	Keys []string
	// TLSCA, TLSCert and TLSKey are PEM files of an operator's CA (one or
	// more CA certificates), this node's certificate signed by it, and
	// the certificate's key: all three or none, and only with Keys (which
	// keep strangers out of the gossip and so off the catalog). With them,
	// connections between ambassadors are TLS 1.3 with mutual
	// authentication against the CA instead of pinned fingerprints; every
	// certificate must name the cluster and its node in a URI SAN
	// ambassador://CLUSTER/NODE, and Node, if set, must be that NODE
	// ("" = take it from the certificate). The files are read in New;
	// changing them takes a restart. "" = no operator CA.
	TLSCA, TLSCert, TLSKey string
	// Profile picks the gossip timers: "lan" (default: memberlist's LAN
	// timers; a killed process leaves the catalogs in about 2.5s, a host that
	// went down in about 7s, at 25 nodes), "wan" (memberlist's WAN timers) or
	// "local" (fast timers for one machine or a netns lab).
	Profile string
	// ProbeInterval, ProbeTimeout and SuspicionMult override the
	// profile's failure detection when non-zero: a node is probed every
	// ProbeInterval, a probe fails after ProbeTimeout (< ProbeInterval),
	// and a suspect is declared dead after about SuspicionMult probe
	// intervals.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// DialTimeout bounds connecting to one instance; a slower instance
	// counts as failed and the next one is tried. The hand-off through a
	// peer that follows has a budget of its own (forward's
	// HandoffTimeout, 5s). Default 3s: TCP resends a lost SYN after 1s, so a
	// 1s timeout turned every lost SYN or SYN-ACK into a failed connection
	// (14 of 54 under 10 % loss, issue 10); 3s allows one resend, and
	// forward's side-by-side connect attempts (forward.Config.DialAttempt,
	// 250ms) several more. A black-holed instance (link down, no reset)
	// costs up to 3s before the next is tried; a crashed one refuses at
	// once.
	DialTimeout time.Duration
	// DrainTimeout bounds how long open connections may run once shutdown
	// starts. Default 30s.
	DrainTimeout time.Duration
	// IdleTimeout resets a forwarded connection with no bytes either way
	// for this long, on both hops. Default 0 = none.
	IdleTimeout time.Duration
	// HalfCloseTimeout resets a forwarded connection one direction of which
	// has ended while the other stays silent this long, on both hops.
	// Default 1m; 0 = none.
	HalfCloseTimeout time.Duration
	// HostsFile is a hosts(5) file (e.g. /etc/hosts) in which the node
	// keeps a marked block mapping every forwarded service name to the
	// address of its local listener; the block is removed at exit.
	// "" = none.
	HostsFile string
	// DNS is the UDP and TCP address (HOST:PORT) of a small DNS server
	// answering A and SRV queries for the same names (NAME.ambassador.,
	// _NAME._tcp.ambassador.). "" = none.
	DNS string
	// Logger; nil = slog.Default().
	Logger *slog.Logger

	// peerUID, when set, replaces SO_PEERCRED on the control socket: a
	// seam for tests that play another user.
	peerUID func(net.Conn) (uint32, error)
}

// DefaultConfig returns the defaults. It does no I/O and cannot fail.
func DefaultConfig() Config {
	return Config{
		Cluster:      "ambassador",
		GossipPort:   7946,
		DataPort:     7947,
		HTTP:         "127.0.0.1:7948",
		Profile:      "lan",
		DrainTimeout: 30 * time.Second,
		DialTimeout:  3 * time.Second,

		HalfCloseTimeout: time.Minute,
		CheckInterval:    2 * time.Second,
		CheckTimeout:     time.Second,
	}
}

// Validate checks the config without side effects, so that a CLI can
// report bad usage before it touches the network. The error names the
// offending setting and value.
func (c Config) Validate() error {
	if c.Node != "" {
		if err := nodename.Check(c.Node); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	if err := nodename.Check(c.Cluster); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for _, name := range c.Interfaces {
		if name == "" {
			return fmt.Errorf("iface: empty interface name")
		}
	}
	if c.Bind != "" {
		a, err := netip.ParseAddr(c.Bind)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			return fmt.Errorf("bind: %q is not an IPv4 address of this host", c.Bind)
		}
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"gossip-port", c.GossipPort}, {"data-port", c.DataPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s: %d is not a port from 1 to 65535", p.name, p.v)
		}
	}
	if c.GossipPort == c.DataPort {
		return fmt.Errorf("data-port: %d is also the gossip port", c.DataPort)
	}
	if c.HTTP != "" {
		if _, err := ParseAddr(c.HTTP, "127.0.0.1"); err != nil {
			return fmt.Errorf("http: %w", err)
		}
	}
	if len(c.Socket) > 107 { // sun_path is 108 bytes with the NUL
		return fmt.Errorf("socket: %q is longer than the 107 bytes a Unix socket path may have", c.Socket)
	}
	for _, j := range c.Join {
		if _, err := joinAddr(j, c.GossipPort); err != nil {
			return fmt.Errorf("join: %w", err)
		}
	}
	for name, p := range c.Balance {
		if _, _, err := ParseBalance(name.String() + "=" + p); err != nil {
			return fmt.Errorf("balance: %w", err)
		}
	}
	if c.Profile != "lan" && c.Profile != "wan" && c.Profile != "local" {
		return fmt.Errorf("profile: %q is not one of lan, wan, local", c.Profile)
	}
	switch {
	case c.ProbeInterval < 0:
		return fmt.Errorf("probe-interval: %s is negative", c.ProbeInterval)
	case c.ProbeTimeout < 0:
		return fmt.Errorf("probe-timeout: %s is negative", c.ProbeTimeout)
	case c.SuspicionMult < 0:
		return fmt.Errorf("suspicion-mult: %d is negative", c.SuspicionMult)
	}
	if pi, pt := c.gossipConfig().Memberlist.ProbeInterval, c.gossipConfig().Memberlist.ProbeTimeout; pt >= pi {
		return fmt.Errorf("probe-timeout: %s must be shorter than the probe interval %s", pt, pi)
	}
	if c.DialTimeout <= 0 {
		return fmt.Errorf("dial-timeout: %s must be positive", c.DialTimeout)
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("drain-timeout: %s is negative", c.DrainTimeout)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("idle-timeout: %s is negative", c.IdleTimeout)
	}
	if c.HalfCloseTimeout < 0 {
		return fmt.Errorf("half-close-timeout: %s is negative", c.HalfCloseTimeout)
	}
	seen := map[string]bool{}
	for _, a := range c.Announce {
		k := a.Name.Lower().String()
		if seen[k] {
			return fmt.Errorf("announce: service %q is announced twice", a.Name)
		}
		seen[k] = true
	}
	for _, u := range c.Upstream {
		k := u.Name.Lower().String()
		if seen[k] {
			return fmt.Errorf("upstream: service %q is also announced or named twice", u.Name)
		}
		seen[k] = true
	}
	for name := range c.Checks {
		if !seen[name.String()] {
			return fmt.Errorf("check: service %q is not announced by this node", name)
		}
	}
	if c.CheckInterval <= 0 {
		return fmt.Errorf("check-interval: %s must be positive", c.CheckInterval)
	}
	if c.CheckTimeout <= 0 || c.CheckTimeout > c.CheckInterval {
		return fmt.Errorf("check-timeout: %s must be positive and at most the check interval %s", c.CheckTimeout, c.CheckInterval)
	}
	seenC := map[string]bool{}
	for _, cr := range c.Credentials {
		if _, err := creds.Parse(cr.Name.String() + "=" + cr.Proto + ":" + cr.Path); err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
		k := cr.Name.Lower().String()
		if seenC[k] {
			return fmt.Errorf("credentials: service %q is named twice", cr.Name)
		}
		seenC[k] = true
	}
	for i, k := range c.Keys {
		if _, err := trust.ParseKey(k); err != nil {
			return fmt.Errorf("key: key %d: %w", i+1, err)
		}
	}
	if err := c.validTLS(); err != nil {
		return err
	}
	for _, r := range c.Resolvers {
		if _, err := resolverAddr(r); err != nil {
			return fmt.Errorf("resolver: %w", err)
		}
	}
	if c.DNS != "" {
		if _, err := netip.ParseAddrPort(c.DNS); err != nil {
			return fmt.Errorf("dns: %q is not IP:PORT", c.DNS)
		}
	}
	seenF := map[string]bool{}
	listens := map[string]svcname.Name{} // a listen address: the service given it
	for _, f := range c.Forward {
		k := f.Name.Lower().String()
		if seenF[k] {
			return fmt.Errorf("forward: service %q is named twice", f.Name)
		}
		seenF[k] = true
		if f.Listen == "" {
			continue
		}
		// One listener per address: the second service would silently
		// get none.
		l := canonicalAddr(f.Listen)
		if other, dup := listens[l]; dup {
			return fmt.Errorf("forward: %s: listen address %s is also %s's", f.Name, f.Listen, other)
		}
		listens[l] = f.Name
	}
	return nil
}

// validTLS checks that the operator-CA files come all three or not at all.
// The error names the first one given and those missing.
func (c Config) validTLS() error {
	files := []struct{ name, v string }{{"tls-ca", c.TLSCA}, {"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey}}
	var given string
	var missing []string
	for _, f := range files {
		switch {
		case f.v == "":
			missing = append(missing, f.name)
		case given == "":
			given = f.name
		}
	}
	if given != "" && len(missing) > 0 {
		return fmt.Errorf("%s: given without %s; tls-ca, tls-cert and tls-key go together", given, strings.Join(missing, " and "))
	}
	if given != "" && len(c.Keys) == 0 {
		// Without a key anyone who reaches the gossip port can join and
		// overwrite any member's catalog record (a higher version wins),
		// sending the data plane to their address: the CA would guard a
		// door whose address a stranger writes.
		return fmt.Errorf("tls-ca: needs --key (or --key-file): without a cluster key a stranger can join the gossip and rewrite the catalog")
	}
	return nil
}

// listenIP is the address the gossip and data ports listen on: Bind, or
// every interface without it (see Bind).
func (c Config) listenIP() string {
	if c.Bind != "" {
		return c.Bind
	}
	return "0.0.0.0"
}

// operatorCA reports whether the data plane uses an operator's CA.
func (c Config) operatorCA() bool { return c.TLSCA != "" }

// gossipConfig is the gossip profile with the failure-detection overrides
// applied. It does no I/O.
func (c Config) gossipConfig() gossip.Config {
	var gc gossip.Config
	switch c.Profile {
	case "local":
		gc = gossip.DefaultLocalConfig()
	case "wan":
		gc = gossip.DefaultWANConfig()
	default:
		gc = gossip.DefaultConfig()
	}
	if c.ProbeInterval > 0 {
		gc.Memberlist.ProbeInterval = c.ProbeInterval
	}
	if c.ProbeTimeout > 0 {
		gc.Memberlist.ProbeTimeout = c.ProbeTimeout
	}
	if c.SuspicionMult > 0 {
		gc.Memberlist.SuspicionMult = c.SuspicionMult
	}
	return gc
}

// resolverAddr turns IP[:PORT] into ip:port, port 53 by default.
func resolverAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("%q is not IP[:PORT]", s)
	}
	return ap.String(), nil
}
