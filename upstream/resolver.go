package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/miekg/dns"
)

// Target is one address to connect to, as produced by Resolve.
type Target struct {
	// Addr is "ip:port" ("[v6]:port" for IPv6).
	Addr string
	// Priority and Weight come from the SRV record the address was found
	// through (RFC 2782); both are 0 for dns and static specs. Every address
	// of an SRV target host carries that record's full weight.
	Priority, Weight uint16
}

// Resolver turns Specs into ordered Targets and keeps watches on them. All
// methods are safe for concurrent use.
type Resolver struct {
	cfg      Config // set in New, read-only afterwards
	log      *slog.Logger
	exchange func(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error)
	ctx      context.Context // cancelled by Close; parent of every watch
	cancel   context.CancelFunc
	wg       sync.WaitGroup // one per watch goroutine

	mu      sync.Mutex
	closed  bool                    // guarded by mu
	watches map[svcname.Name]*watch // guarded by mu; by upstream name
}

// New validates cfg and returns a Resolver. When cfg.Servers is empty it
// reads the nameservers from /etc/resolv.conf. New starts no goroutines and
// sends no queries; call Close when done with Watch.
func New(cfg Config) (*Resolver, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(c.Servers) == 0 {
		if c.Servers, err = serversFromResolvConf(resolvConf); err != nil {
			return nil, err
		}
	}
	r := &Resolver{
		cfg:      c,
		log:      c.Logger.With("component", "upstream"),
		exchange: c.Exchange,
		watches:  make(map[svcname.Name]*watch),
	}
	if r.exchange == nil {
		r.exchange = r.udpThenTCP
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// udpThenTCP is the default Exchange: UDP, and TCP when the reply is
// truncated.
func (r *Resolver) udpThenTCP(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	resp, err := r.exchangeNet(ctx, "udp", m, server)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	return r.exchangeNet(ctx, "tcp", m, server)
}

func (r *Resolver) exchangeNet(ctx context.Context, network string, m *dns.Msg, server string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: r.cfg.Timeout}
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// dns.Client only turns ctx's deadline into socket deadlines; closing
	// the socket is what makes cancellation (Close) interrupt a read.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return resp, err
}

// Bounds on one resolve, whatever the DNS servers answer: a 64 KB reply
// over TCP can name about 2,000 SRV target hosts or 4,000 addresses.
const (
	// maxSRVLookups bounds the follow-up A/AAAA lookups for SRV target
	// hosts that the reply gave no addresses for. They run one after
	// another, each up to Timeout per server and query, so without a
	// bound one reply could hold a resolve for hours.
	maxSRVLookups = 32
	// maxTargets bounds the targets a resolve returns; the lowest SRV
	// priorities are kept.
	maxTargets = 1024
)

// ednsSize is the UDP payload size we advertise, the DNS Flag Day 2020
// value that avoids IP fragmentation.
const ednsSize = 1232

// query asks the servers in order for name/qtype and returns the first
// usable reply. A reply is usable when its rcode is NOERROR; NXDOMAIN is
// final and returned as a *net.DNSError with IsNotFound. Transport errors
// and other rcodes (SERVFAIL, REFUSED) move on to the next server.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsSize, false)
	qt := dns.TypeToString[qtype]
	var errs []error
	for _, server := range r.cfg.Servers {
		qctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		resp, err := r.exchange(qctx, m, server)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("query %s %s via %s: %w", qt, name, server, err))
			continue
		case resp.Rcode == dns.RcodeNameError:
			return nil, &net.DNSError{Err: "no such host", Name: name, Server: server, IsNotFound: true}
		case resp.Rcode != dns.RcodeSuccess:
			errs = append(errs, fmt.Errorf("query %s %s via %s: %w", qt, name, server,
				&net.DNSError{Err: "server answered " + dns.RcodeToString[resp.Rcode], Name: name, Server: server, IsTemporary: true}))
			continue
		}
		return resp, nil
	}
	return nil, joinErrs(errs)
}

// Resolve looks s up once and returns its targets in the order a client
// should try them, and how long they may be cached (the smallest TTL of the
// records used, clamped to MinTTL..MaxTTL).
//
// For srv: lowest priority first, weighted random within a priority (see
// Order); each SRV target host becomes one Target per A/AAAA address, from
// the reply's additional section when it has any for that host, else from
// follow-up queries. A lone SRV record with target "." means the service is
// decidedly unavailable: no targets, no error. For dns and static names:
// every A and AAAA address, in the server's order. For a static IP: that
// address with TTL MaxTTL, without any query. The addresses 0.0.0.0 and ::
// are never targets (a connection to them reaches this host): they are
// left out of answers, and an answer with no other address is a not-found
// error, which a Watch treats as a failure.
//
// Errors start with "upstream: resolve" and the spec; NXDOMAIN wraps a
// *net.DNSError with IsNotFound set. Resolve blocks for at most about
// Timeout per server per query, less if ctx ends; it does not need the
// Resolver to be open. An SRV resolve looks up at most maxSRVLookups
// target hosts that the reply carried no addresses for, and any resolve
// returns at most maxTargets targets; what a bound leaves out is logged
// as a warning.
func (r *Resolver) Resolve(ctx context.Context, s Spec) ([]Target, time.Duration, error) {
	targets, ttl, err := r.resolve(ctx, s)
	if err != nil {
		return nil, 0, fmt.Errorf("upstream: resolve %s: %w", s, err)
	}
	return targets, r.clamp(ttl), nil
}

func (r *Resolver) clamp(ttl time.Duration) time.Duration {
	return min(max(ttl, r.cfg.MinTTL), r.cfg.MaxTTL)
}

func (r *Resolver) resolve(ctx context.Context, s Spec) ([]Target, time.Duration, error) {
	switch s.Kind {
	case KindSRV:
		return r.resolveSRV(ctx, s.Name)
	case KindDNS, KindStatic:
		if s.Port < 1 || s.Port > math.MaxUint16 {
			return nil, 0, fmt.Errorf("port %d out of range", s.Port)
		}
		if ip, ok := s.ip(); ok {
			if s.Kind == KindDNS {
				return nil, 0, fmt.Errorf("dns spec names the IP %s, not a host", ip)
			}
			if err := targetIP(ip); err != nil {
				return nil, 0, err
			}
			return []Target{{Addr: netip.AddrPortFrom(ip, uint16(s.Port)).String()}}, r.cfg.MaxTTL, nil
		}
		if _, err := hostName(s.Name); err != nil {
			return nil, 0, err
		}
		ips, ttl, err := r.lookupHost(ctx, dns.Fqdn(s.Name))
		if err != nil {
			return nil, 0, err
		}
		if len(ips) > maxTargets {
			r.log.Warn("DNS answer too large; using part of it", "name", s.Name,
				"addresses", len(ips), "max_targets", maxTargets)
			ips = ips[:maxTargets]
		}
		out := make([]Target, 0, len(ips))
		for _, ip := range ips {
			out = append(out, Target{Addr: netip.AddrPortFrom(ip, uint16(s.Port)).String()})
		}
		return out, ttl, nil
	}
	return nil, 0, fmt.Errorf("unknown kind %q", s.Kind)
}

// rrTTL is a record's TTL as a duration.
func rrTTL(rr dns.RR) time.Duration { return time.Duration(rr.Header().Ttl) * time.Second }

// chain returns the lower-case names that answer for name in resp: name
// itself plus the CNAME targets reachable from it (bounded, so a CNAME loop
// ends), and the smallest TTL of the CNAMEs followed.
func chain(resp *dns.Msg, name string) (map[string]bool, time.Duration) {
	names := map[string]bool{strings.ToLower(name): true}
	ttl := time.Duration(math.MaxInt64)
	cur := strings.ToLower(name)
	for range 8 {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = strings.ToLower(c.Target)
				ttl = min(ttl, rrTTL(rr))
				break
			}
		}
		if next == "" || names[next] {
			break
		}
		names[next] = true
		cur = next
	}
	return names, ttl
}

func (r *Resolver) resolveSRV(ctx context.Context, name string) ([]Target, time.Duration, error) {
	if _, err := hostName(name); err != nil {
		return nil, 0, err
	}
	name = dns.Fqdn(name)
	resp, err := r.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, 0, err
	}
	owners, ttl := chain(resp, name)
	var srvs []*dns.SRV
	for _, rr := range resp.Answer {
		if srv, ok := rr.(*dns.SRV); ok && owners[strings.ToLower(srv.Hdr.Name)] {
			srvs = append(srvs, srv)
			ttl = min(ttl, rrTTL(rr))
		}
	}
	if len(srvs) == 0 {
		return nil, 0, &net.DNSError{Err: "no SRV records", Name: name, IsNotFound: true}
	}
	if len(srvs) == 1 && srvs[0].Target == "." {
		return nil, ttl, nil // RFC 2782: decidedly not available
	}

	// Addresses from the additional section, by lower-case owner name.
	extra := make(map[string][]dns.RR)
	for _, rr := range resp.Extra {
		switch rr.(type) {
		case *dns.A, *dns.AAAA:
			n := strings.ToLower(rr.Header().Name)
			extra[n] = append(extra[n], rr)
		}
	}

	// Lowest priority first, the server's order kept within one, so the
	// bounds below leave out the targets a client would try last.
	slices.SortStableFunc(srvs, func(a, b *dns.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	var (
		targets []Target
		seen    = make(map[string]bool)
		hosts   = make(map[string][]netip.Addr) // lookups done for this call
		errs    []error
		lookups int // follow-up lookups made, at most maxSRVLookups
		skipped int // hosts not looked up past maxSRVLookups
	)
	for _, rec := range srvs {
		host := strings.ToLower(rec.Target)
		if host == "." {
			continue // "." next to real targets: ignore it
		}
		if rec.Port == 0 {
			continue // no service there; dialing :0 would only fail
		}
		ips, done := hosts[host]
		if !done {
			if rrs := extra[host]; len(rrs) > 0 {
				for _, rr := range rrs {
					if ip := rrAddr(rr); ip.IsValid() {
						ips = append(ips, ip)
						ttl = min(ttl, rrTTL(rr))
					}
				}
			} else if lookups == maxSRVLookups {
				skipped++
			} else {
				lookups++
				var hostTTL time.Duration
				ips, hostTTL, err = r.lookupHost(ctx, host)
				if err != nil {
					if ctx.Err() != nil {
						return nil, 0, ctx.Err()
					}
					errs = append(errs, err)
				} else {
					ttl = min(ttl, hostTTL)
				}
			}
			hosts[host] = ips
		}
		for _, ip := range ips {
			addr := netip.AddrPortFrom(ip, rec.Port).String()
			if seen[addr] {
				continue
			}
			seen[addr] = true
			targets = append(targets, Target{Addr: addr, Priority: rec.Priority, Weight: rec.Weight})
		}
	}
	if len(targets) == 0 {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("no addresses for the SRV targets of %s", name))
		}
		return nil, 0, joinErrs(errs)
	}
	// Not an error to retry soon: the same reply would be cut the same way.
	if dropped := len(targets) - maxTargets; skipped > 0 || dropped > 0 {
		r.log.Warn("SRV answer too large; using part of it", "service", name,
			"hosts_not_looked_up", skipped, "max_lookups", maxSRVLookups,
			"targets_left_out", max(dropped, 0), "max_targets", maxTargets)
		targets = targets[:min(len(targets), maxTargets)]
	}
	// Hosts that failed to resolve are left out, and the answer is kept
	// only briefly, so the watch tries them again soon: one lost packet
	// must not drop a healthy target for a whole record TTL.
	if len(errs) > 0 {
		ttl = min(ttl, r.cfg.MinTTL)
		r.log.Debug("some SRV targets did not resolve; retrying soon", "service", name, "err", joinErrs(errs))
	}
	return Order(targets), ttl, nil
}

// rrAddr returns the address of an A or AAAA record, or the zero Addr when
// it is not one a backend can have (see targetIP), so callers skip it.
func rrAddr(rr dns.RR) netip.Addr {
	var ip netip.Addr
	switch rr := rr.(type) {
	case *dns.A:
		ip, _ = netip.AddrFromSlice(rr.A.To4())
	case *dns.AAAA:
		ip, _ = netip.AddrFromSlice(rr.AAAA.To16())
	}
	ip = ip.Unmap()
	if !ip.IsValid() || targetIP(ip) != nil {
		return netip.Addr{}
	}
	return ip
}

// lookupHost returns the A then AAAA addresses of the fully qualified
// host and their smallest TTL. It fails only when neither query produced
// an address.
func (r *Resolver) lookupHost(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	var (
		ips     []netip.Addr
		ttl     = time.Duration(math.MaxInt64)
		errs    []error
		skipped int // unspecified addresses, left out
	)
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.query(ctx, host, qt)
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				if len(ips) > 0 {
					// NXDOMAIN for AAAA after A records: a server that
					// mishandles AAAA (RFC 4074 §4.2); the name exists.
					break
				}
				return nil, 0, err // NXDOMAIN: the AAAA query would say the same
			}
			errs = append(errs, err)
			continue
		}
		owners, cttl := chain(resp, host)
		for _, rr := range resp.Answer {
			if rr.Header().Rrtype != qt || !owners[strings.ToLower(rr.Header().Name)] {
				continue
			}
			if ip := rrAddr(rr); ip.IsValid() {
				ips = append(ips, ip)
				ttl = min(ttl, rrTTL(rr), cttl)
			} else {
				skipped++
			}
		}
	}
	if len(ips) == 0 {
		switch {
		case len(errs) > 0:
		case skipped > 0:
			errs = append(errs, &net.DNSError{Err: "only unspecified addresses (0.0.0.0, ::), as a DNS filter answers for a blocked name", Name: host, IsNotFound: true})
		default:
			errs = append(errs, &net.DNSError{Err: "no A or AAAA records", Name: host, IsNotFound: true})
		}
		return nil, 0, joinErrs(errs)
	}
	return ips, ttl, nil
}

// joinErrs is errors.Join on one line: the parts are separated by "; " so
// a log line stays a line.
func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return multiErr(errs)
}

type multiErr []error

func (m multiErr) Error() string {
	parts := make([]string, len(m))
	for i, err := range m {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (m multiErr) Unwrap() []error { return m }
