package mesh

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/internal/dnsname"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Announce is one service this node hosts: clients reach it on Port, and the
// node's ambassador hands their connections to Host:TargetPort.
type Announce struct {
	Name       svcname.Name // RFC 6335 service name, e.g. "redis"
	Port       int          // client-facing port, 1..65535
	Host       string       // where the service listens; default 127.0.0.1
	TargetPort int          // 1..65535
	Weight     int          // share of new connections relative to other instances; 0 = 1
}

// Target is the address the ambassador dials for this service.
func (a Announce) Target() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.TargetPort)) }

// String gives the announcement back in flag syntax.
func (a Announce) String() string {
	s := fmt.Sprintf("%s:%d=%s", a.Name, a.Port, a.Target())
	if a.Weight > 0 {
		s += ",weight=" + strconv.Itoa(a.Weight)
	}
	return s
}

// maxWeight keeps weights small enough that smooth round-robin sums stay
// exact and a typo does not starve every other instance.
const maxWeight = 1000

// Forward limits forwarding to one service, optionally on a listen address
// of the user's choice.
type Forward struct {
	Name   svcname.Name
	Listen string // host:port; "" = 127.0.0.1:<the service's port>
}

// ParseAnnounce parses NAME[:PORT]=[HOST:]TARGET_PORT[,weight=N].
func ParseAnnounce(s string) (Announce, error) {
	name, target, ok := strings.Cut(s, "=")
	if !ok {
		return Announce{}, fmt.Errorf("%q: want NAME[:PORT]=[HOST:]TARGET_PORT", s)
	}
	var a Announce
	target, opts, hasOpts := strings.Cut(target, ",")
	for _, opt := range strings.Split(opts, ",") {
		if !hasOpts {
			break
		}
		k, v, _ := strings.Cut(opt, "=")
		if k != "weight" {
			return Announce{}, fmt.Errorf("%q: unknown option %q (want weight=N)", s, opt)
		}
		w, err := strconv.Atoi(v)
		if err != nil || w < 1 || w > maxWeight {
			return Announce{}, fmt.Errorf("%q: weight %q is not a number from 1 to %d", s, v, maxWeight)
		}
		a.Weight = w
	}
	rawName, portStr, _ := strings.Cut(name, ":")
	var err error
	if a.Name, err = svcname.Parse(rawName); err != nil {
		return Announce{}, fmt.Errorf("%q: %w", s, err)
	}
	if strings.EqualFold(a.Name.String(), "ambassador") {
		return Announce{}, fmt.Errorf("%q: the service name ambassador is reserved for discovery", s)
	}
	host, tport, err := splitHostPort(target, "127.0.0.1")
	if err != nil {
		return Announce{}, fmt.Errorf("%q: target: %w", s, err)
	}
	a.Host, a.TargetPort = host, tport
	a.Port = tport
	if portStr != "" {
		if a.Port, err = parsePort(portStr); err != nil {
			return Announce{}, fmt.Errorf("%q: port: %w", s, err)
		}
	}
	return a, nil
}

// ParseForward parses NAME[=[HOST:]PORT].
func ParseForward(s string) (Forward, error) {
	raw, listen, hasListen := strings.Cut(s, "=")
	name, err := svcname.Parse(raw)
	if err != nil {
		return Forward{}, fmt.Errorf("%q: %w", s, err)
	}
	f := Forward{Name: name}
	if hasListen {
		host, port, err := splitHostPort(listen, "127.0.0.1")
		if err != nil {
			return Forward{}, fmt.Errorf("%q: listen address: %w", s, err)
		}
		f.Listen = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return f, nil
}

// ParseAddr parses HOST:PORT or PORT (host defaults to def) into a
// host:port string, as used by `ambassador forward LISTEN=TARGET`.
func ParseAddr(s, def string) (string, error) {
	host, port, err := splitHostPort(s, def)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// splitHostPort accepts PORT, HOST:PORT and [IPv6]:PORT.
func splitHostPort(s, defHost string) (string, int, error) {
	if s == "" {
		return "", 0, fmt.Errorf("empty address")
	}
	if !strings.Contains(s, ":") {
		p, err := parsePort(s)
		return defHost, p, err
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not HOST:PORT", s)
	}
	if host == "" {
		host = defHost
	}
	if err := validHost(host); err != nil {
		return "", 0, err
	}
	p, err := parsePort(portStr)
	return host, p, err
}

// validHost accepts an IP or a host name (internal/dnsname, the rule
// upstream's specs follow too).
func validHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if err := dnsname.Check(h); err != nil {
		return fmt.Errorf("not an IP or a host name: %w", err)
	}
	return nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

// ParseBalance parses NAME=POLICY for --balance.
func ParseBalance(s string) (name svcname.Name, policy string, err error) {
	raw, policy, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("%q: want NAME=POLICY", s)
	}
	if name, err = svcname.Parse(raw); err != nil {
		return "", "", fmt.Errorf("%q: %w", s, err)
	}
	if policy == "" {
		return "", "", fmt.Errorf("%q: policy is empty", s)
	}
	if err := forward.ValidBalance(policy); err != nil {
		return "", "", fmt.Errorf("%q: %w", s, err)
	}
	return name.Lower(), policy, nil
}
