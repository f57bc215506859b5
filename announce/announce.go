// Package announce advertises this node and its services with multicast
// DNS / DNS-SD (RFC 6762, RFC 6763) and discovers the other nodes of the
// same cluster on the local link.
//
// Each node publishes itself as an instance of _ambassador._tcp.local
// (instance = node name, TXT cluster=<name> and gossip=<port>) and each
// service it hosts as a plain DNS-SD service _NAME._tcp.local (instance =
// node name, TXT node=<node>), so standard tools (avahi-browse, dig) see
// them. The SRV target of every record is <HostName>.local. with an A
// record for the node's address on that link.
//
// The records are built with hashicorp/mdns (MDNSService). The responder
// and querier are our own, because the library's server handles only one
// interface, sends no announcements or goodbyes and answers legacy unicast
// queries in a way dig rejects.
//
// Known answers in a query suppress ours (RFC 6762 §7.1). A query with the
// TC bit says its known answers continue in the packets without questions
// that follow it (§7.2, §18.5): its answer waits a random 400-500 ms, and
// leaves out the records those packets list when they come from the
// query's own address and port. Our own peer query lists at most 30
// known peers, all in one packet, so it never sets TC.
//
// RFC 6762 probing and conflict resolution (§8.1, §9) are not implemented:
// node names are unique within a cluster already, and the host name used
// as SRV target is derived from the node name.
//
// The package knows nothing about gossip or proxying: discovered peers are
// handed to Config.OnPeer.
package announce

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Service is one DNS-SD service this node hosts.
type Service struct {
	// Name is the RFC 6335 service name, e.g. "redis", published as
	// _redis._tcp.local. See ValidServiceName.
	Name svcname.Name
	// Port is the client-facing TCP port, 1..65535.
	Port int
}

// Peer is another node of the same cluster seen on the link.
type Peer struct {
	Node       string     // the peer's node name (DNS-SD instance)
	Cluster    string     // TXT cluster=; always equals Config.Cluster
	Addr       netip.Addr // IPv4 of the peer
	GossipPort int        // TXT gossip=
	Iface      string     // interface it was seen on
}

// Config configures a Server. The zero value of every optional field means
// "use the default"; DefaultConfig returns those defaults filled in.
type Config struct {
	// Node is the DNS-SD instance name of this node. Required; 1..63 bytes
	// of printable ASCII without '"' and '\'.
	Node string
	// Cluster is published as TXT cluster=; peers of other clusters are
	// ignored. Required; 1..200 bytes of printable ASCII without '"' and '\'.
	Cluster string
	// HostName is the SRV target label, published as <HostName>.local.
	// Zero: Node sanitised to a DNS label (lower-case letters, digits,
	// hyphens, at most 63). When set it must be such a label already.
	HostName string
	// GossipPort is published as TXT gossip= and as the SRV port of the
	// _ambassador._tcp record. Required; 1..65535.
	GossipPort int
	// Interfaces lists the interface names to use. Zero (empty): every up,
	// multicast-capable, non-loopback interface with an IPv4 address. A
	// listed interface that does not exist makes Start fail.
	Interfaces []string
	// Addr is the IPv4 address published in A records. Zero: each
	// interface's own first IPv4 address.
	Addr netip.Addr
	// TTL is the record TTL, whole seconds. Default 120s; zero means the
	// default, otherwise at least 1s.
	TTL time.Duration
	// QueryMin is the first interval between peer queries while no peer
	// has been seen; it doubles up to QueryMax. Default 1s, the least RFC
	// 6762 §5.2 allows between the first two queries (shorter values are
	// for tests); zero means the default.
	QueryMin time.Duration
	// QueryMax is the longest interval between peer queries, used once a
	// peer has been seen. Default 30s; zero means the default; must be
	// >= QueryMin.
	QueryMax time.Duration
	// RescanInterval is how often interfaces are re-listed to pick up new
	// ones and drop vanished ones. Default 5s; zero means the default.
	RescanInterval time.Duration
	// OnPeer is called with each discovered peer, from one announce
	// goroutine (calls never overlap). The same (node, address, port) is
	// reported again at most every few seconds, and again after QueryNow
	// (once its query is answered).
	// It must not block for long: peers arriving meanwhile are buffered
	// (64) and dropped when the buffer is full. Zero (nil): peers are
	// ignored.
	OnPeer func(Peer)
	// Logger receives the log; component=announce is added. Zero (nil):
	// slog.Default().
	Logger *slog.Logger
}

// Defaults, see Config.
const (
	defaultTTL            = 120 * time.Second // RFC 6762 §10: host and SRV records
	defaultQueryMin       = time.Second       // RFC 6762 §5.2
	defaultQueryMax       = 30 * time.Second
	defaultRescanInterval = 5 * time.Second
	maxNodeLen            = 63  // one DNS label
	maxClusterLen         = 200 // fits a TXT string with "cluster="
	peerServiceName       = "ambassador"
)

// DefaultConfig returns a Config with every optional field set to its
// default. Node, Cluster and GossipPort must still be set.
func DefaultConfig() Config {
	return Config{
		TTL:            defaultTTL,
		QueryMin:       defaultQueryMin,
		QueryMax:       defaultQueryMax,
		RescanInterval: defaultRescanInterval,
	}
}

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.TTL == 0 {
		c.TTL = defaultTTL
	}
	if c.QueryMin == 0 {
		c.QueryMin = defaultQueryMin
	}
	if c.QueryMax == 0 {
		c.QueryMax = defaultQueryMax
	}
	if c.RescanInterval == 0 {
		c.RescanInterval = defaultRescanInterval
	}
	if c.HostName == "" {
		c.HostName = sanitizeHostName(c.Node)
	}
	if c.Addr.Is4In6() {
		c.Addr = c.Addr.Unmap()
	}
	c.Interfaces = append([]string(nil), c.Interfaces...)
	return c
}

// validate checks a config that already has its defaults.
func (c *Config) validate() error {
	if err := checkText("Node", c.Node, maxNodeLen); err != nil {
		return err
	}
	if err := checkText("Cluster", c.Cluster, maxClusterLen); err != nil {
		return err
	}
	if err := checkLabel(c.HostName); err != nil {
		return fmt.Errorf("announce: config: HostName %q: %w", c.HostName, err)
	}
	if c.GossipPort < 1 || c.GossipPort > 65535 {
		return fmt.Errorf("announce: config: GossipPort %d is not in 1..65535", c.GossipPort)
	}
	seen := make(map[string]bool, len(c.Interfaces))
	for _, name := range c.Interfaces {
		if name == "" {
			return errors.New("announce: config: Interfaces contains an empty name")
		}
		if seen[name] {
			return fmt.Errorf("announce: config: Interfaces lists %q twice", name)
		}
		seen[name] = true
	}
	if c.Addr.IsValid() && !c.Addr.Is4() {
		return fmt.Errorf("announce: config: Addr %s is not an IPv4 address", c.Addr)
	}
	if c.TTL < time.Second {
		return fmt.Errorf("announce: config: TTL %s is below 1s", c.TTL)
	}
	if c.TTL > time.Duration(1<<31-1)*time.Second {
		return fmt.Errorf("announce: config: TTL %s is too large", c.TTL)
	}
	if c.QueryMin < 0 {
		return fmt.Errorf("announce: config: QueryMin %s is negative", c.QueryMin)
	}
	if c.QueryMax < c.QueryMin {
		return fmt.Errorf("announce: config: QueryMax %s is below QueryMin %s", c.QueryMax, c.QueryMin)
	}
	if c.RescanInterval < 0 {
		return fmt.Errorf("announce: config: RescanInterval %s is negative", c.RescanInterval)
	}
	return nil
}

// checkText accepts 1..maxLen bytes of printable ASCII without '"' and
// '\', which survive DNS names and TXT strings in miekg/dns presentation
// format unchanged (apart from the escapes escapeLabel adds).
func checkText(field, s string, maxLen int) error {
	if s == "" {
		return fmt.Errorf("announce: config: %s is required", field)
	}
	if len(s) > maxLen {
		return fmt.Errorf("announce: config: %s %q is longer than %d bytes", field, s, maxLen)
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b > '~' || b == '"' || b == '\\' {
			return fmt.Errorf("announce: config: %s %q: byte %q not allowed (printable ASCII without '\"' and '\\')", field, s, b)
		}
	}
	return nil
}

// checkLabel accepts a host name label: 1..63 letters, digits and hyphens,
// not starting or ending with a hyphen.
func checkLabel(s string) error {
	if s == "" || len(s) > 63 {
		return errors.New("must be 1..63 bytes")
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return errors.New("must not start or end with a hyphen")
	}
	for i := 0; i < len(s); i++ {
		if !isLetter(s[i]) && !isDigit(s[i]) && s[i] != '-' {
			return fmt.Errorf("byte %q not allowed (letters, digits, hyphens)", s[i])
		}
	}
	return nil
}

// sanitizeHostName turns a node name into a host name label. A name that
// is one already, in lower case, is used as it is. Any other is cleaned:
// lower-case letters and digits are kept, runs of anything else become one
// hyphen, leading and trailing hyphens are dropped (nothing usable gives
// "ambassador"), and a hyphen and 8 hex digits of a hash of the whole name
// follow, within 63 bytes. The hash keeps apart names that clean to the
// same label (db_1 and db-1, DB1 and db1): two nodes with one host name
// would each answer for it, and a resolver would flip between their
// addresses.
func sanitizeHostName(node string) string {
	if checkLabel(node) == nil && strings.ToLower(node) == node {
		return node
	}
	var b strings.Builder
	hyphen := false
	for i := 0; i < len(node); i++ {
		c := node[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if isLetter(c) || isDigit(c) {
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteByte(c)
			continue
		}
		hyphen = true
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	suffix := fmt.Sprintf("-%08x", h.Sum32())
	s := b.String()
	if len(s) > 63-len(suffix) {
		s = strings.TrimRight(s[:63-len(suffix)], "-")
	}
	if s == "" {
		s = peerServiceName
	}
	return s + suffix
}

// ValidServiceName reports whether name is a valid RFC 6335 §5.1 service
// name: 1..15 letters, digits and hyphens, at least one letter, no hyphen
// at the start or end and no two hyphens in a row, and not a hexadecimal
// number such as 0x10 (an IPv4 address to resolvers). It is svcname.Check,
// the one rule every package applies to a service name.
func ValidServiceName(name string) error {
	if err := svcname.Check(name); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	return nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
