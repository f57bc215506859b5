package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/listennet"
	"github.com/miekg/dns"
)

// dnsDomain is the zone the --dns server answers for besides bare names:
// pg-a. and pg-a.ambassador. both resolve.
const dnsDomain = "ambassador."

// dnsTTL is short: a name's address changes when a second service on its
// port appears, and a withdrawn service should stop resolving soon.
const dnsTTL = 5

// dnsServer answers A and SRV queries for the forwarded services, from the
// same list as the --hosts block, on UDP and TCP:
//
//	NAME.  and  NAME.ambassador.                 A    the listener's address (AAAA for IPv6)
//	_NAME._tcp.  and  _NAME._tcp.ambassador.     SRV  0 0 PORT NAME.ambassador. (+ A or AAAA)
//
// It is authoritative for ambassador.: the apex answers SOA, and NS naming
// the apex itself (the SOA's MNAME; any label under it could be a
// service's name), whose A or AAAA is where a local client reaches the
// server, as for a service: the address it listens on, 127.0.0.1 for
// 0.0.0.0 (reachAt). Any other name under it that is not a service gets NXDOMAIN (a
// service's name asked for another type NODATA), both with the SOA so that
// resolvers cache them. An unknown bare name, or a name outside the zone,
// gets REFUSED, so that a resolver that asks it first moves on to the next
// server.
type dnsServer struct {
	lookup func(name string) (named, bool)
	self   netip.Addr // where a local client reaches it: its address, 127.0.0.1 for 0.0.0.0 or [::]
	log    *slog.Logger
	udp    *dns.Server
	tcp    *dns.Server
	wg     sync.WaitGroup
}

// startDNS listens on addr (UDP and TCP, the same port) and serves until
// Close. A port in use is an error here, before the node reports ready.
func startDNS(addr string, lookup func(string) (named, bool), log *slog.Logger) (*dnsServer, error) {
	pc, ln, err := listenPair(addr, net.Listen)
	if err != nil {
		return nil, fmt.Errorf("mesh: dns: %w", err)
	}
	return serveDNSOn(pc, ln, lookup, log)
}

// serveDNSOn serves on pc and ln, which it owns from then on.
func serveDNSOn(pc net.PacketConn, ln net.Listener, lookup func(string) (named, bool), log *slog.Logger) (*dnsServer, error) {
	d := &dnsServer{lookup: lookup, log: log}
	if ap, ok := reachAt(pc.LocalAddr().String()); ok {
		d.self = ap.Addr()
	}
	d.udp = &dns.Server{PacketConn: pc, Handler: d, MsgAcceptFunc: dnsAccept, UDPSize: dnsUDPSize}
	d.tcp = &dns.Server{Listener: newLimitListener(ln, maxDNSConns), Handler: d, MsgAcceptFunc: dnsAccept, ReadTimeout: 2 * time.Second}
	// Shutdown before a server runs would fail, so wait for each to start.
	// ActivateAndServe either calls NotifyStartedFunc or returns an error
	// before it (setting options on the UDP socket can fail): wait for
	// whichever comes, never for ever.
	var failed []error
	for _, s := range []*dns.Server{d.udp, d.tcp} {
		up, early := make(chan struct{}), make(chan error, 1)
		s.NotifyStartedFunc = func() { close(up) }
		d.wg.Go(func() {
			err := s.ActivateAndServe()
			select {
			case <-up:
				// It ran: Close ends it with nil or net.ErrClosed.
				if err != nil && !errors.Is(err, net.ErrClosed) {
					d.log.Warn("dns server stopped", "err", err)
				}
			default:
				// It never started: serveDNSOn returns the error.
				if err == nil {
					err = errors.New("stopped before it started")
				}
				early <- err
			}
		})
		select {
		case <-up:
		case err := <-early:
			failed = append(failed, err)
		}
	}
	if failed != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// The one that started stops; the other's shutdown says it was
		// not started, which is no news.
		_ = d.udp.ShutdownContext(ctx)
		_ = d.tcp.ShutdownContext(ctx)
		d.wg.Wait()
		pc.Close()
		ln.Close()
		return nil, fmt.Errorf("mesh: dns: start: %w", errors.Join(failed...))
	}
	d.log.Info("dns server listening", "listen", pc.LocalAddr().String())
	return d, nil
}

// listenPair listens on UDP addr and then on TCP at the port UDP got, so
// that addr may say port 0. The kernel picks a UDP port free for UDP only;
// when its TCP twin is taken, port 0 tries another (as memberlist does for
// its gossip port), an explicit port fails.
//
// An IPv4 address listens on IPv4 only (internal/listennet).
func listenPair(addr string, listenTCP func(network, addr string) (net.Listener, error)) (net.PacketConn, net.Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, nil, err
	}
	udp, tcp := listennet.Network("udp", addr), listennet.Network("tcp", addr)
	tries := 1
	if ap.Port() == 0 {
		tries = 10
	}
	for i := 1; ; i++ {
		pc, err := net.ListenPacket(udp, addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := listenTCP(tcp, pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i >= tries || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, err
		}
	}
}

// Addr is the UDP (and TCP) address the server listens on.
func (d *dnsServer) Addr() string { return d.udp.PacketConn.LocalAddr().String() }

// Close stops both servers and waits for them.
func (d *dnsServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := errors.Join(d.udp.ShutdownContext(ctx), d.tcp.ShutdownContext(ctx))
	d.wg.Wait()
	if err != nil {
		return fmt.Errorf("mesh: dns: stop: %w", err)
	}
	return nil
}

// dnsUDPSize is the UDP payload size it offers in its OPT record, the
// DNS flag day 2020 size, which fits any path MTU, and so the largest
// query it reads over UDP (RFC 6891 6.2.3: the size offered is what it
// can receive; miekg reads 512 bytes unless told). Its replies, one SRV
// and one A at most, are far smaller.
const dnsUDPSize = 1232

// maxDNSConns bounds the TCP connections served at once; one more waits in
// Accept until another closes. Resolvers use TCP only for a retry after a
// truncated reply, one connection at a time; without a bound a client
// holding connections open (a query every few seconds keeps one alive past
// the idle timeout) takes file descriptors the forwarders need.
const maxDNSConns = 64

// dnsAccept lets every request but a response through to ServeDNS.
// miekg's DefaultMsgAcceptFunc answers other opcodes than QUERY and NOTIFY
// NOTIMP, and a request without exactly one question (or with more
// records than a query needs) FORMERR, before ServeDNS sees it and without
// the OPT record that RFC 6891 6.1.1 asks for in every reply to a query
// with one, error replies too; ServeDNS gives those answers with it. A
// response (QR set) still gets no reply: answering one can start a loop.
// A request that does not parse still gets miekg's FORMERR without OPT:
// where it stops parsing, its OPT cannot be read.
func dnsAccept(h dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if h.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// ServeDNS answers one query; miekg/dns calls it concurrently.
func (d *dnsServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := d.answer(r)
	// RFC 6891 6.1.1: a query with an OPT record gets one back, and
	// RFC 3225 copies its DO bit. Without it systemd-resolved decides the
	// server has no EDNS and falls back to plain UDP for it.
	if opt := r.IsEdns0(); opt != nil {
		if opt.Version() != 0 {
			m = new(dns.Msg)
			m.SetRcode(r, dns.RcodeBadVers)
		}
		m.SetEdns0(dnsUDPSize, opt.Do())
	}
	_ = w.WriteMsg(m)
}

// answer builds the reply to r, without EDNS.
func (d *dnsServer) answer(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	if r.Opcode != dns.OpcodeQuery {
		// NOTIFY too: this server holds no secondary zone, and a NOERROR
		// would tell the sender its notify was taken.
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	if len(r.Question) != 1 || countOPT(r.Extra) > 1 {
		// One question, and at most one OPT (RFC 6891 6.1.1).
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := r.Question[0]
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		// No zone transfers (RFC 5936 2.2.1). An IXFR carries the
		// client's SOA in its authority section (RFC 1995 3).
		m.Rcode = dns.RcodeRefused
		return m
	}
	if len(r.Answer) != 0 || len(r.Ns) != 0 {
		// A query has nothing there; unbound answers FORMERR too. Other
		// additional records than the OPT (a TSIG) are ignored.
		m.Rcode = dns.RcodeFormatError
		return m
	}
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return m
	}
	switch strings.ToLower(dns.Fqdn(q.Name)) {
	case dnsDomain:
		// The apex: its SOA, its NS (itself, with its address as the
		// additional record), its address, or NODATA for any other type.
		m.Authoritative = true
		ns := &dns.NS{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: dnsTTL}, Ns: dnsDomain}
		var self dns.RR // nil only if pc had no IP address
		if d.self.IsValid() {
			self = addrRR(q.Name, d.self)
		}
		switch {
		case q.Qtype == dns.TypeANY:
			m.Answer = append(m.Answer, dnsSOA(), ns)
			if self != nil {
				m.Answer = append(m.Answer, self)
			}
		case q.Qtype == dns.TypeSOA:
			m.Answer = append(m.Answer, dnsSOA())
		case q.Qtype == dns.TypeNS:
			m.Answer = append(m.Answer, ns)
			if self != nil {
				m.Extra = append(m.Extra, addrRR(dnsDomain, d.self))
			}
		case self != nil && q.Qtype == self.Header().Rrtype:
			m.Answer = append(m.Answer, self)
		default:
			m.Ns = append(m.Ns, dnsSOA())
		}
		return m
	case "_tcp." + dnsDomain:
		// An empty non-terminal above the SRV names: it exists (RFC 8020
		// resolvers take its NXDOMAIN to deny every name below it).
		m.Authoritative = true
		m.Ns = append(m.Ns, dnsSOA())
		return m
	}
	name, srv, inZone, ok := parseQName(q.Name)
	var n named
	if ok {
		n, ok = d.lookup(name)
	}
	if !ok {
		if !inZone {
			// Not ours: a resolver that asked us first moves on.
			m.Rcode = dns.RcodeRefused
			return m
		}
		// Every name under the zone that is not a service does not exist;
		// the SOA lets resolvers cache that (RFC 2308).
		m.Authoritative = true
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, dnsSOA())
		return m
	}
	m.Authoritative = true
	a := addrRR(q.Name, n.At.Addr())
	switch {
	case !srv && (q.Qtype == a.Header().Rrtype || q.Qtype == dns.TypeANY):
		m.Answer = append(m.Answer, a)
	case srv && (q.Qtype == dns.TypeSRV || q.Qtype == dns.TypeANY):
		a = addrRR(n.Name+"."+dnsDomain, n.At.Addr())
		m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: dnsTTL},
			Port: n.At.Port(), Target: n.Name + "." + dnsDomain})
		m.Extra = append(m.Extra, a)
	case inZone:
		// Any other type: NODATA, NOERROR with no answer (the name
		// exists), and the SOA for negative caching.
		m.Ns = append(m.Ns, dnsSOA())
	}
	return m
}

func countOPT(rrs []dns.RR) int {
	n := 0
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n
}

// addrRR is name's address record: A, or AAAA for a listener on an IPv6
// address (--forward pg-a=[::1]:5432), which an A record would carry as
// 0.0.0.0.
func addrRR(name string, addr netip.Addr) dns.RR {
	hdr := dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: dnsTTL}
	if addr.Is4() {
		return &dns.A{Hdr: hdr, A: addr.AsSlice()}
	}
	hdr.Rrtype = dns.TypeAAAA
	return &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()}
}

// dnsSOA is the zone's SOA record, which negative answers carry: RFC 2308
// caches them for the smaller of its TTL and its minimum, both dnsTTL, so
// a service that appears resolves as soon as it would have changed.
func dnsSOA() *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: dnsDomain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: dnsTTL},
		Ns: dnsDomain, Mbox: "hostmaster." + dnsDomain, Serial: 1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: dnsTTL}
}

// parseQName turns a query name into a service name: "pg-a." or
// "pg-a.ambassador." (srv false), "_pg-a._tcp." or "_pg-a._tcp.ambassador."
// (srv true); inZone says the name ended in ambassador., whether or not
// it has one of these forms (ok). Case does not matter.
func parseQName(q string) (name string, srv, inZone, ok bool) {
	q = strings.ToLower(dns.Fqdn(q))
	if strings.HasSuffix(q, "."+dnsDomain) {
		q, inZone = strings.TrimSuffix(q, dnsDomain), true
	}
	labels := strings.Split(strings.TrimSuffix(q, "."), ".")
	switch {
	case len(labels) == 1 && labels[0] != "" && !strings.HasPrefix(labels[0], "_"):
		return labels[0], false, inZone, true
	case len(labels) == 2 && labels[1] == "_tcp" && len(labels[0]) > 1 && labels[0][0] == '_':
		return labels[0][1:], true, inZone, true
	}
	return "", false, inZone, false
}
