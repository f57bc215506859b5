package upstream

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ambassador-mesh/ambassador/internal/dnsname"
)

// Kinds of Spec.
const (
	KindSRV    = "srv"    // targets of a DNS SRV record
	KindDNS    = "dns"    // A/AAAA addresses of a host name, fixed port
	KindStatic = "static" // an IP or a host name with a fixed port
)

// Spec says where an upstream's targets come from. It is a plain value,
// safe to copy and compare; build one with Parse.
type Spec struct {
	// Kind is KindSRV, KindDNS or KindStatic.
	Kind string
	// Name is the SRV owner name (lower-case, fully qualified with a
	// trailing dot) for KindSRV, or the lower-case host name or canonical IP
	// for KindDNS and KindStatic. Host names are always looked up as fully
	// qualified: resolv.conf search domains are not applied.
	Name string
	// Port is the target port (1-65535) for KindDNS and KindStatic; 0 for
	// KindSRV, whose records carry their own ports.
	Port int
}

// Parse parses the value after "NAME=" in --upstream NAME=VALUE:
//
//	srv:_redis._tcp.example.lab   targets of the SRV record
//	dns:db.example.lab:5432       A/AAAA of the host, port 5432
//	db.example.lab:5432           the same, written as a static host
//	10.0.0.7:5432, [fd00::7]:5432 a fixed address; no DNS at all
//
// The "srv:" and "dns:" prefixes are case-insensitive; a host actually
// named "srv" or "dns" is written dns:srv:PORT. Errors quote the bad value.
// Parse is a pure function, safe for concurrent use.
func Parse(s string) (Spec, error) {
	sp, err := parse(s)
	if err != nil {
		return Spec{}, fmt.Errorf("upstream: parse %q: %w", s, err)
	}
	return sp, nil
}

func parse(s string) (Spec, error) {
	scheme, rest, found := strings.Cut(s, ":")
	switch {
	case found && strings.EqualFold(scheme, KindSRV):
		if rest == "" {
			return Spec{}, fmt.Errorf("empty SRV name")
		}
		if _, err := strconv.Atoi(rest); err == nil {
			return Spec{}, fmt.Errorf("SRV name %q is a number; for a host named srv write dns:srv:%s", rest, rest)
		}
		name, err := hostName(rest)
		if err != nil {
			return Spec{}, err
		}
		if !strings.HasSuffix(name, ".") {
			name += "."
		}
		return Spec{Kind: KindSRV, Name: name}, nil
	case found && strings.EqualFold(scheme, KindDNS):
		host, port, err := hostPort(rest)
		if err != nil {
			return Spec{}, err
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return Spec{}, fmt.Errorf("dns: needs a host name, not the IP %q; write %s without dns:", host, rest)
		}
		name, err := hostName(host)
		if err != nil {
			return Spec{}, err
		}
		return Spec{Kind: KindDNS, Name: name, Port: port}, nil
	}
	host, port, err := hostPort(s)
	if err != nil {
		return Spec{}, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := targetIP(ip); err != nil {
			return Spec{}, err
		}
		return Spec{Kind: KindStatic, Name: ip.String(), Port: port}, nil
	}
	if strings.Contains(host, ":") {
		return Spec{}, fmt.Errorf("host %q is not a valid IP", host)
	}
	name, err := hostName(host)
	if err != nil {
		return Spec{}, err
	}
	return Spec{Kind: KindStatic, Name: name, Port: port}, nil
}

func hostPort(s string) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		return "", 0, fmt.Errorf("missing host in %q", s)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("port %q is not a number in 1-65535", ps)
	}
	return host, int(port), nil
}

// hostName checks s is a host name (internal/dnsname: letters, digits,
// '-' and '_', since SRV labels start with '_'; a trailing dot is kept) and
// returns it in lower case.
func hostName(s string) (string, error) {
	if err := dnsname.Check(s); err != nil {
		return "", err
	}
	return strings.ToLower(s), nil
}

// targetIP rejects an address no backend can have: a connection to 0.0.0.0
// or :: reaches this host itself, a service inside the mesh (or none)
// rather than the one outside it. DNS filters answer these for a name they
// block.
func targetIP(ip netip.Addr) error {
	if ip.IsUnspecified() {
		return fmt.Errorf("IP %s is the unspecified address, which reaches this host, not a backend", ip)
	}
	return nil
}

// String formats s the way Parse reads it: Parse(s.String()) == s for any
// s Parse returned.
func (s Spec) String() string {
	hp := net.JoinHostPort(s.Name, strconv.Itoa(s.Port))
	switch s.Kind {
	case KindSRV:
		return KindSRV + ":" + s.Name
	case KindDNS:
		return KindDNS + ":" + hp
	case KindStatic:
		return hp
	}
	return s.Kind + ":" + hp
}

// ip returns the address a static spec names, if it names one rather than
// a host.
func (s Spec) ip() (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s.Name)
	return ip, err == nil
}
