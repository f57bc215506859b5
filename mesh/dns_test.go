package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDNSServer(t *testing.T) {
	d := testDNS(t)
	tests := []struct {
		qname     string
		qtype     uint16
		wantRcode int
		want      string // the answer section, one RR per line, as miekg prints it
		wantExtra string
	}{
		{"pg-a.ambassador.", dns.TypeA, dns.RcodeSuccess, "pg-a.ambassador.\t5\tIN\tA\t127.71.38.10", ""},
		{"PG-A.", dns.TypeA, dns.RcodeSuccess, "PG-A.\t5\tIN\tA\t127.71.38.10", ""},
		{"_pg-a._tcp.ambassador.", dns.TypeSRV, dns.RcodeSuccess, "_pg-a._tcp.ambassador.\t5\tIN\tSRV\t0 0 5432 pg-a.ambassador.", "pg-a.ambassador.\t5\tIN\tA\t127.71.38.10"},
		{"_redis._tcp.", dns.TypeSRV, dns.RcodeSuccess, "_redis._tcp.\t5\tIN\tSRV\t0 0 6379 redis.ambassador.", "redis.ambassador.\t5\tIN\tA\t127.0.0.1"},
		{"redis.ambassador.", dns.TypeAAAA, dns.RcodeSuccess, "", ""},
		{"mysql.ambassador.", dns.TypeA, dns.RcodeNameError, "", ""},
		{"mysql.", dns.TypeA, dns.RcodeRefused, "", ""},
		{"www.example.com.", dns.TypeA, dns.RcodeRefused, "", ""},
		{"_pg-a._udp.ambassador.", dns.TypeSRV, dns.RcodeNameError, "", ""},
	}
	for _, proto := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: proto}
		for _, tt := range tests {
			m := new(dns.Msg)
			m.SetQuestion(tt.qname, tt.qtype)
			r, _, err := c.Exchange(m, d.Addr())
			if err != nil {
				t.Fatalf("%s %s %s: %v", proto, tt.qname, dns.TypeToString[tt.qtype], err)
			}
			if r.Rcode != tt.wantRcode || rrs(r.Answer) != tt.want || rrs(r.Extra) != tt.wantExtra {
				t.Errorf("%s %s %s: rcode %s answer %q extra %q; want %s %q %q", proto, tt.qname, dns.TypeToString[tt.qtype],
					dns.RcodeToString[r.Rcode], rrs(r.Answer), rrs(r.Extra), dns.RcodeToString[tt.wantRcode], tt.want, tt.wantExtra)
			}
			if tt.wantRcode != dns.RcodeRefused && !r.Authoritative {
				t.Errorf("%s %s: not authoritative", proto, tt.qname)
			}
		}
	}
	addr := d.Addr()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("redis.ambassador.", dns.TypeA)
	if _, _, err := (&dns.Client{Net: "tcp"}).Exchange(m, addr); err == nil {
		t.Fatal("the server still answers after Close")
	}
}

func rrs(list []dns.RR) string {
	var s []string
	for _, rr := range list {
		s = append(s, rr.String())
	}
	return strings.Join(s, "\n")
}

func TestDNSPortInUse(t *testing.T) {
	d, err := startDNS("127.0.0.1:0", func(string) (named, bool) { return named{}, false }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d2, err := startDNS(d.Addr(), nil, slog.New(slog.DiscardHandler)); err == nil {
		d2.Close()
		t.Fatalf("second server on %s started", d.Addr())
	}
}

// With port 0 the kernel picks a port free for UDP only; a TCP twin that is
// taken makes listenPair try another port, never an explicit one.
func TestListenPairRetriesPortZero(t *testing.T) {
	inUse := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	for _, tc := range []struct {
		name    string
		addr    string
		taken   int // how many TCP listens fail with EADDRINUSE first
		wantErr bool
	}{
		{name: "port 0, twin taken twice", addr: "127.0.0.1:0", taken: 2},
		{name: "port 0, twin always taken", addr: "127.0.0.1:0", taken: 100, wantErr: true},
		{name: "explicit port, twin taken", addr: "127.0.0.1:" + strconv.Itoa(freeUDPPort(t)), taken: 1, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			listen := func(network, addr string) (net.Listener, error) {
				calls++
				if calls <= tc.taken {
					return nil, inUse
				}
				return net.Listen(network, addr)
			}
			pc, ln, err := listenPair(tc.addr, listen)
			if tc.wantErr {
				if err == nil {
					pc.Close()
					ln.Close()
					t.Fatal("listenPair succeeded, want the bind error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			defer ln.Close()
			// At least: the real listen after the fake failures can itself
			// find the port's TCP twin taken by another process (seen in CI
			// with the whole suite running), and listenPair rightly tries
			// again on a new port. Fewer would mean it gave up early.
			if calls < tc.taken+1 {
				t.Errorf("%d TCP listens, want at least %d", calls, tc.taken+1)
			}
			if pc.LocalAddr().String() != ln.Addr().String() {
				t.Errorf("UDP on %s, TCP on %s: want one port", pc.LocalAddr(), ln.Addr())
			}
		})
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// testDNS starts a server that knows pg-a, redis and pg6 (forwarded on an
// IPv6 address), stopped at cleanup.
func testDNS(t *testing.T) *dnsServer {
	t.Helper()
	return testDNSAt(t, "127.0.0.1:0")
}

// testDNSAt is testDNS listening on addr.
func testDNSAt(t *testing.T, addr string) *dnsServer {
	t.Helper()
	known := map[string]named{
		"pg-a":  {Name: "pg-a", At: netip.MustParseAddrPort("127.71.38.10:5432")},
		"redis": {Name: "redis", At: netip.MustParseAddrPort("127.0.0.1:6379")},
		"pg6":   {Name: "pg6", At: netip.MustParseAddrPort("[::1]:5433")},
	}
	lookup := func(name string) (named, bool) { n, ok := known[strings.ToLower(name)]; return n, ok }
	d, err := startDNS(addr, lookup, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// RFC 6891 6.1.1: a reply to a query with an OPT record carries one, and a
// query of an EDNS version above 0 gets BADVERS. systemd-resolved takes a
// reply without OPT as a server that does not support EDNS and falls back
// to plain UDP for it ("Using degraded feature set UDP instead of
// UDP+EDNS0"). A query without OPT gets none back.
func TestDNSEDNS(t *testing.T) {
	d := testDNS(t)
	for _, tc := range []struct {
		name        string
		edns        bool
		version     uint8
		do          bool
		wantRcode   int
		wantAnswers int
	}{
		{name: "no EDNS", wantRcode: dns.RcodeSuccess, wantAnswers: 1},
		{name: "EDNS 0", edns: true, wantRcode: dns.RcodeSuccess, wantAnswers: 1},
		{name: "EDNS 0 with DO", edns: true, do: true, wantRcode: dns.RcodeSuccess, wantAnswers: 1},
		{name: "EDNS 1", edns: true, version: 1, wantRcode: dns.RcodeBadVers},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(proto+" "+tc.name, func(t *testing.T) {
				m := new(dns.Msg)
				m.SetQuestion("pg-a.ambassador.", dns.TypeA)
				if tc.edns {
					m.SetEdns0(1232, tc.do)
					m.IsEdns0().SetVersion(tc.version)
				}
				r, _, err := (&dns.Client{Net: proto}).Exchange(m, d.Addr())
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != tc.wantRcode || len(r.Answer) != tc.wantAnswers {
					t.Errorf("got rcode %s with %d answers, want %s with %d", rcodeName(r.Rcode), len(r.Answer), rcodeName(tc.wantRcode), tc.wantAnswers)
				}
				opt := r.IsEdns0()
				switch {
				case !tc.edns && opt != nil:
					t.Errorf("got OPT %v in the reply to a query without one", opt)
				case tc.edns && opt == nil:
					t.Fatal("got no OPT in the reply to a query with one")
				case tc.edns:
					if opt.Version() != 0 || opt.UDPSize() < 512 || opt.Do() != tc.do {
						t.Errorf("got OPT version %d size %d DO %v, want version 0, size >= 512, DO %v", opt.Version(), opt.UDPSize(), opt.Do(), tc.do)
					}
				}
			})
		}
	}
}

// rcodeName is dns.RcodeToString, which calls 16 BADSIG (a TSIG error
// sharing BADVERS's value).
func rcodeName(rc int) string {
	if rc == dns.RcodeBadVers {
		return "BADVERS"
	}
	return dns.RcodeToString[rc]
}

// The server is authoritative for ambassador.: every name under it either
// exists or is NXDOMAIN, never REFUSED (which resolvers take as a broken
// server: systemd-resolved retries it at lower feature levels, unbound
// marks it lame), and every negative answer from the zone carries its SOA
// in the authority section so that resolvers may cache it (RFC 2308), for
// no longer than a positive answer. A name that exists with another type
// is NODATA (NOERROR, no answer), never NXDOMAIN, or glibc and Go fail the
// whole lookup. The apex answers SOA, and NS and A naming the server
// (TestDNSApex); _tcp.ambassador., an empty
// non-terminal above the SRV names, exists (RFC 8020: its NXDOMAIN would
// deny every name below it).
func TestDNSZone(t *testing.T) {
	d := testDNS(t)
	tests := []struct {
		qname     string
		qtype     uint16
		wantRcode int
		wantSOA   string // "answer", "authority" or "" (none)
	}{
		{"ambassador.", dns.TypeSOA, dns.RcodeSuccess, "answer"},
		{"AMBASSADOR.", dns.TypeSOA, dns.RcodeSuccess, "answer"},
		{"ambassador.", dns.TypeNS, dns.RcodeSuccess, ""},
		{"ambassador.", dns.TypeA, dns.RcodeSuccess, ""},
		{"ambassador.", dns.TypeAAAA, dns.RcodeSuccess, "authority"},
		{"ambassador.", dns.TypeMX, dns.RcodeSuccess, "authority"},
		{"_tcp.ambassador.", dns.TypeA, dns.RcodeSuccess, "authority"},
		{"redis.ambassador.", dns.TypeAAAA, dns.RcodeSuccess, "authority"},
		{"REDIS.ambassador.", dns.TypeMX, dns.RcodeSuccess, "authority"},
		{"_redis._tcp.ambassador.", dns.TypeA, dns.RcodeSuccess, "authority"},
		{"mysql.ambassador.", dns.TypeA, dns.RcodeNameError, "authority"},
		{"mysql.ambassador.", dns.TypeAAAA, dns.RcodeNameError, "authority"},
		{"_mysql._tcp.ambassador.", dns.TypeSRV, dns.RcodeNameError, "authority"},
		{"_pg-a._udp.ambassador.", dns.TypeSRV, dns.RcodeNameError, "authority"},
		{"_pg-a.ambassador.", dns.TypeSRV, dns.RcodeNameError, "authority"},
		{"www.pg-a.ambassador.", dns.TypeA, dns.RcodeNameError, "authority"},
		{"x._pg-a._tcp.ambassador.", dns.TypeA, dns.RcodeNameError, "authority"},
		{"pg-a.ambassador.", dns.TypeA, dns.RcodeSuccess, ""},
		{"redis.", dns.TypeAAAA, dns.RcodeSuccess, ""}, // bare names are not in the zone
		{"mysql.", dns.TypeA, dns.RcodeRefused, ""},
		{"ambassador.example.", dns.TypeSOA, dns.RcodeRefused, ""},
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(proto+" "+tt.qname+" "+dns.TypeToString[tt.qtype], func(t *testing.T) {
				m := new(dns.Msg)
				m.SetQuestion(tt.qname, tt.qtype)
				r, _, err := (&dns.Client{Net: proto}).Exchange(m, d.Addr())
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != tt.wantRcode {
					t.Errorf("got rcode %s, want %s", rcodeName(r.Rcode), rcodeName(tt.wantRcode))
				}
				if tt.wantRcode != dns.RcodeRefused && !r.Authoritative {
					t.Error("got a reply without AA")
				}
				var soas []*dns.SOA
				where := ""
				for _, s := range []struct {
					name string
					rrs  []dns.RR
				}{{"answer", r.Answer}, {"authority", r.Ns}} {
					for _, rr := range s.rrs {
						if soa, ok := rr.(*dns.SOA); ok {
							soas, where = append(soas, soa), s.name
						}
					}
				}
				if len(soas) > 1 || where != tt.wantSOA {
					t.Fatalf("got %d SOA records (in %q), want one in %q; answer %q authority %q", len(soas), where, tt.wantSOA, rrs(r.Answer), rrs(r.Ns))
				}
				if tt.wantSOA == "authority" && len(r.Answer) != 0 {
					t.Errorf("got answer %q, want none", rrs(r.Answer))
				}
				if len(soas) == 1 {
					soa := soas[0]
					if soa.Hdr.Name != dnsDomain || soa.Hdr.Ttl != dnsTTL || soa.Minttl != dnsTTL {
						t.Errorf("got SOA %q, want one for %s with TTL and minimum %d", soa.String(), dnsDomain, dnsTTL)
					}
				}
			})
		}
	}
}

// The reply's header, per RFC 1035 4.1.1: the ID, the opcode and RD come
// back, RA is never claimed (it does not recurse), the question comes back
// as asked. A request that is not a standard query (NOTIFY, UPDATE, ...)
// is NOTIMP rather than answered as if it were one; a query with no
// question or two is FORMERR.
func TestDNSHeader(t *testing.T) {
	d := testDNS(t)
	for _, tc := range []struct {
		name      string
		opcode    int
		rd        bool
		questions []dns.Question
		wantRcode int
	}{
		{name: "query RD", opcode: dns.OpcodeQuery, rd: true, questions: []dns.Question{{Name: "Pg-A.AMBASSADOR.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}, wantRcode: dns.RcodeSuccess},
		{name: "query no RD", opcode: dns.OpcodeQuery, questions: []dns.Question{{Name: "pg-a.ambassador.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}, wantRcode: dns.RcodeSuccess},
		{name: "notify", opcode: dns.OpcodeNotify, questions: []dns.Question{{Name: "ambassador.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}, wantRcode: dns.RcodeNotImplemented},
		{name: "notify for a service", opcode: dns.OpcodeNotify, rd: true, questions: []dns.Question{{Name: "pg-a.ambassador.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}, wantRcode: dns.RcodeNotImplemented},
		{name: "iquery", opcode: dns.OpcodeIQuery, questions: []dns.Question{{Name: "pg-a.ambassador.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}, wantRcode: dns.RcodeNotImplemented},
		{name: "status", opcode: dns.OpcodeStatus, questions: []dns.Question{{Name: "pg-a.ambassador.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}, wantRcode: dns.RcodeNotImplemented},
		{name: "update", opcode: dns.OpcodeUpdate, questions: []dns.Question{{Name: "ambassador.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}, wantRcode: dns.RcodeNotImplemented},
		{name: "no question", opcode: dns.OpcodeQuery, wantRcode: dns.RcodeFormatError},
		{name: "two questions", opcode: dns.OpcodeQuery, questions: []dns.Question{
			{Name: "pg-a.ambassador.", Qtype: dns.TypeA, Qclass: dns.ClassINET},
			{Name: "redis.ambassador.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}, wantRcode: dns.RcodeFormatError},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(proto+" "+tc.name, func(t *testing.T) {
				m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: dns.Id(), Opcode: tc.opcode, RecursionDesired: tc.rd}, Question: tc.questions}
				r, _, err := (&dns.Client{Net: proto}).Exchange(m, d.Addr())
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != tc.wantRcode {
					t.Errorf("got rcode %s, want %s", rcodeName(r.Rcode), rcodeName(tc.wantRcode))
				}
				if r.Id != m.Id || r.Opcode != tc.opcode || !r.Response || r.RecursionAvailable {
					t.Errorf("got ID %d opcode %s QR %v RA %v, want ID %d opcode %s QR true RA false",
						r.Id, dns.OpcodeToString[r.Opcode], r.Response, r.RecursionAvailable, m.Id, dns.OpcodeToString[tc.opcode])
				}
				if tc.opcode == dns.OpcodeQuery && r.RecursionDesired != tc.rd {
					t.Errorf("got RD %v, want %v", r.RecursionDesired, tc.rd)
				}
				if tc.wantRcode != dns.RcodeSuccess && len(r.Answer) != 0 {
					t.Errorf("got answer %q, want none", rrs(r.Answer))
				}
				if tc.wantRcode == dns.RcodeSuccess && (len(r.Question) != 1 || r.Question[0] != tc.questions[0]) {
					t.Errorf("got question %v, want %v", r.Question, tc.questions[0])
				}
			})
		}
	}
}

// The TCP side serves at most maxDNSConns connections at once: a client
// that opens connections and keeps each alive with a query every few
// seconds must not take every file descriptor of the node, whose
// forwarders need them. One more waits until another closes; UDP goes on.
func TestDNSTCPConnLimit(t *testing.T) {
	d := testDNS(t)
	q := new(dns.Msg)
	q.SetQuestion("pg-a.ambassador.", dns.TypeA)
	open := func() *dns.Conn {
		t.Helper()
		c, err := dns.Dial("tcp", d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var held []*dns.Conn
	for range maxDNSConns {
		c := open()
		// An answer means the server took the connection.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadMsg(); err != nil {
			t.Fatalf("connection %d: %v", len(held)+1, err)
		}
		held = append(held, c)
	}
	extra := open()
	if err := extra.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if r, err := extra.ReadMsg(); err == nil {
		t.Fatalf("connection %d answered with %d held open: %v", maxDNSConns+1, maxDNSConns, r.Answer)
	}
	if r, _, err := new(dns.Client).Exchange(q, d.Addr()); err != nil || len(r.Answer) != 1 {
		t.Fatalf("UDP with TCP full: got %v, %v; want an answer", r, err)
	}
	held[0].Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if r, err := extra.ReadMsg(); err != nil || len(r.Answer) != 1 {
		t.Fatalf("connection %d after one closed: got %v, %v; want an answer", maxDNSConns+1, r, err)
	}
	// Full again, and a connection waiting: Close still stops both sides.
	open()
	if err := d.Close(); err != nil {
		t.Fatalf("Close with every TCP slot taken: %v", err)
	}
}

// --dns 0.0.0.0:PORT names every IPv4 address. Go's "udp" and "tcp"
// networks open [::] for it, which takes every IPv6 address too (past a
// firewall written for IPv4), and the log said it listened on [::].
func TestDNSListensWhereTold(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	d, err := startDNS("0.0.0.0:0", func(string) (named, bool) { return named{}, false }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, port, err := net.SplitHostPort(d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Addr(), "0.0.0.0:"+port; got != want {
		t.Errorf("got Addr %q, want %q", got, want)
	}
	if c, err := net.Dial("tcp6", net.JoinHostPort("::1", port)); err == nil {
		c.Close()
		t.Errorf("TCP on [::1]:%s connected, want refused", port)
	}
}

// A packet that does not parse gets FORMERR (or nothing, for less than a
// header), never a crash, and the server goes on answering.
func TestDNSMalformed(t *testing.T) {
	d := testDNS(t)
	good := new(dns.Msg)
	good.SetQuestion("pg-a.ambassador.", dns.TypeA)
	wire, err := good.Pack()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want int // rcode, or -1: no reply
	}{
		{name: "short header", pkt: wire[:5], want: -1},
		{name: "question cut short", pkt: wire[:len(wire)-3], want: dns.RcodeFormatError},
		{name: "label past the end", pkt: append(slices.Clone(wire[:12]), 60, 'a'), want: dns.RcodeFormatError},
		{name: "compression loop", pkt: append(slices.Clone(wire[:12]), 0xc0, 12, 0, 1, 0, 1), want: dns.RcodeFormatError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("udp", d.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.pkt); err != nil {
				t.Fatal(err)
			}
			if tc.want >= 0 {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 512)
				n, err := c.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				r := new(dns.Msg)
				if err := r.Unpack(buf[:n]); err != nil {
					t.Fatalf("the reply does not parse: %v", err)
				}
				if r.Rcode != tc.want || r.Id != good.Id {
					t.Errorf("got rcode %s ID %d, want %s ID %d", rcodeName(r.Rcode), r.Id, rcodeName(tc.want), good.Id)
				}
			}
			r, _, err := new(dns.Client).Exchange(good, d.Addr())
			if err != nil || len(r.Answer) != 1 {
				t.Fatalf("after it: got %v, %v; want an answer", r, err)
			}
		})
	}
}

// A service forwarded on an IPv6 address (--forward pg6=[::1]:5433) has an
// AAAA record and no A: the hosts file maps it to ::1 the same way.
func TestDNSIPv6Listener(t *testing.T) {
	d := testDNS(t)
	for _, tc := range []struct {
		qname      string
		qtype      uint16
		want       string
		wantExtra  string
		wantNODATA bool
	}{
		{qname: "pg6.ambassador.", qtype: dns.TypeAAAA, want: "pg6.ambassador.\t5\tIN\tAAAA\t::1"},
		{qname: "pg6.", qtype: dns.TypeAAAA, want: "pg6.\t5\tIN\tAAAA\t::1"},
		{qname: "pg6.ambassador.", qtype: dns.TypeA, wantNODATA: true},
		{qname: "_pg6._tcp.ambassador.", qtype: dns.TypeSRV, want: "_pg6._tcp.ambassador.\t5\tIN\tSRV\t0 0 5433 pg6.ambassador.", wantExtra: "pg6.ambassador.\t5\tIN\tAAAA\t::1"},
		{qname: "pg-a.ambassador.", qtype: dns.TypeAAAA, wantNODATA: true},
	} {
		t.Run(tc.qname+" "+dns.TypeToString[tc.qtype], func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, tc.qtype)
			r, _, err := new(dns.Client).Exchange(m, d.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeSuccess || rrs(r.Answer) != tc.want || rrs(r.Extra) != tc.wantExtra {
				t.Errorf("got rcode %s answer %q extra %q, want NOERROR %q %q", rcodeName(r.Rcode), rrs(r.Answer), rrs(r.Extra), tc.want, tc.wantExtra)
			}
			if tc.wantNODATA && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("got authority %q, want the SOA", rrs(r.Ns))
			}
		})
	}
}

// Go's own resolver, as a client program on the node uses it with the
// server in resolv.conf: A and AAAA asked together, SRV, and "no such
// host" for an unknown name.
func TestDNSGoResolver(t *testing.T) {
	d := testDNS(t)
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var nd net.Dialer
				return nd.DialContext(ctx, proto, d.Addr())
			}}
			ctx := t.Context()
			for name, want := range map[string]string{
				"pg-a.ambassador":  "127.71.38.10",
				"PG-A.ambassador.": "127.71.38.10",
				"pg6.ambassador":   "::1",
			} {
				got, err := r.LookupHost(ctx, name)
				if err != nil || len(got) != 1 || got[0] != want {
					t.Errorf("LookupHost(%q): got %v, %v; want [%s]", name, got, err, want)
				}
			}
			if got, err := r.LookupHost(ctx, "mysql.ambassador."); !isNotFound(err) {
				t.Errorf("LookupHost(mysql.ambassador.): got %v, %v; want not found", got, err)
			}
			cname, srvs, err := r.LookupSRV(ctx, "redis", "tcp", "ambassador")
			if err != nil || cname != "_redis._tcp.ambassador." || len(srvs) != 1 || srvs[0].Target != "redis.ambassador." || srvs[0].Port != 6379 {
				t.Errorf("LookupSRV(redis, tcp, ambassador): got %q %v %v", cname, srvs, err)
			}
		})
	}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// RFC 6891 6.1.1 and 7: a responder that speaks EDNS puts an OPT record in
// every reply to a query with one, error replies too, and a query with
// more than one OPT is FORMERR. miekg/dns answers what its default
// MsgAcceptFunc rejects (opcodes other than QUERY and NOTIFY, not exactly
// one question, more records than a query needs) itself, with no OPT, so
// the server lets every request through to its own handler. That handler
// takes a query with records in its answer or authority section, which
// no resolver sends, as FORMERR (as unbound does), and ignores additional
// records other than OPT. A response (QR set) still gets nothing:
// answering one can make a loop.
func TestDNSErrorRepliesKeepEDNS(t *testing.T) {
	d := testDNS(t)
	q := dns.Question{Name: "pg-a.ambassador.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	junk := &dns.A{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(192, 0, 2, 1)}
	for _, tc := range []struct {
		name      string
		msg       dns.Msg // the request; OPT (DO set) added when edns
		edns      bool
		extraOPT  bool // a second OPT
		wantRcode int  // -1: no reply
	}{
		{name: "update", msg: dns.Msg{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeUpdate}, Question: []dns.Question{q}}, edns: true, wantRcode: dns.RcodeNotImplemented},
		{name: "iquery", msg: dns.Msg{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeIQuery}, Question: []dns.Question{q}}, edns: true, wantRcode: dns.RcodeNotImplemented},
		{name: "status", msg: dns.Msg{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeStatus}, Question: []dns.Question{q}}, edns: true, wantRcode: dns.RcodeNotImplemented},
		{name: "notify", msg: dns.Msg{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeNotify}, Question: []dns.Question{q}}, edns: true, wantRcode: dns.RcodeNotImplemented},
		{name: "no question", msg: dns.Msg{}, edns: true, wantRcode: dns.RcodeFormatError},
		{name: "two questions", msg: dns.Msg{Question: []dns.Question{q, q}}, edns: true, wantRcode: dns.RcodeFormatError},
		{name: "two OPT records", msg: dns.Msg{Question: []dns.Question{q}}, edns: true, extraOPT: true, wantRcode: dns.RcodeFormatError},
		{name: "a record in the answer section", msg: dns.Msg{Question: []dns.Question{q}, Answer: []dns.RR{junk}}, edns: true, wantRcode: dns.RcodeFormatError},
		{name: "records in the answer section", msg: dns.Msg{Question: []dns.Question{q}, Answer: []dns.RR{junk, junk}}, edns: true, wantRcode: dns.RcodeFormatError},
		{name: "a record in the authority section", msg: dns.Msg{Question: []dns.Question{q}, Ns: []dns.RR{junk}}, edns: true, wantRcode: dns.RcodeFormatError},
		{name: "three more additional records", msg: dns.Msg{Question: []dns.Question{q}, Extra: []dns.RR{junk, junk, junk}}, edns: true, wantRcode: dns.RcodeSuccess},
		{name: "update without EDNS", msg: dns.Msg{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeUpdate}, Question: []dns.Question{q}}, wantRcode: dns.RcodeNotImplemented},
		{name: "no question without EDNS", msg: dns.Msg{}, wantRcode: dns.RcodeFormatError},
		{name: "a response", msg: dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Question: []dns.Question{q}}, edns: true, wantRcode: -1},
		{name: "a response to an update", msg: dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Opcode: dns.OpcodeUpdate}, Question: []dns.Question{q}}, edns: true, wantRcode: -1},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(proto+" "+tc.name, func(t *testing.T) {
				m := tc.msg.Copy()
				m.Id = dns.Id()
				if tc.edns {
					m.SetEdns0(1232, true)
				}
				if tc.extraOPT {
					opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
					opt.SetUDPSize(1232)
					opt.SetDo()
					m.Extra = append(m.Extra, opt)
				}
				pkt, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				r, err := exchangeRaw(proto, d.Addr(), pkt, tc.wantRcode < 0)
				if err != nil {
					t.Fatal(err)
				}
				if tc.wantRcode < 0 {
					if r != nil {
						t.Fatalf("got a reply %s, want none", rcodeName(r.Rcode))
					}
					return
				}
				if r.Rcode != tc.wantRcode || r.Id != m.Id || r.Opcode != m.Opcode {
					t.Errorf("got rcode %s ID %d opcode %s, want %s ID %d opcode %s", rcodeName(r.Rcode), r.Id, dns.OpcodeToString[r.Opcode],
						rcodeName(tc.wantRcode), m.Id, dns.OpcodeToString[m.Opcode])
				}
				opt, opts := r.IsEdns0(), 0
				for _, rr := range r.Extra {
					if rr.Header().Rrtype == dns.TypeOPT {
						opts++
					}
				}
				switch {
				case !tc.edns && opt != nil:
					t.Errorf("got OPT %v in the reply to a query without one", opt)
				case tc.edns && opt == nil:
					t.Errorf("got a %s reply without OPT to a query with one", rcodeName(r.Rcode))
				case tc.edns && (opts != 1 || opt.Version() != 0 || !opt.Do()):
					t.Errorf("got %d OPT records, version %d DO %v; want one, version 0, DO copied", opts, opt.Version(), opt.Do())
				}
			})
		}
	}
}

// exchangeRaw sends pkt as it is, over UDP or TCP (with its length
// prefix), and reads one reply; with none wanted, it waits a moment for
// one and returns nil when none came.
func exchangeRaw(proto, addr string, pkt []byte, noneWanted bool) (*dns.Msg, error) {
	c, err := net.Dial(proto, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	wait := 5 * time.Second
	if noneWanted {
		wait = 300 * time.Millisecond
	}
	c.SetDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	var n int
	if proto == "tcp" {
		if _, err := c.Write(append([]byte{byte(len(pkt) >> 8), byte(len(pkt))}, pkt...)); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			if noneWanted && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF)) {
				return nil, nil
			}
			return nil, err
		}
		n = int(buf[0])<<8 | int(buf[1])
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return nil, err
		}
	} else {
		if _, err := c.Write(pkt); err != nil {
			return nil, err
		}
		if n, err = c.Read(buf); err != nil {
			if noneWanted && errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, nil
			}
			return nil, err
		}
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		return nil, fmt.Errorf("the reply does not parse: %w", err)
	}
	return r, nil
}

// The OPT record of every reply offers dnsUDPSize: a client may send a
// query that large over UDP (RFC 6891 6.2.3: the size a responder offers
// is what it can receive), as a padded or cookie-laden query can be. The
// server read only 512 bytes of a datagram, so a longer query was cut and
// answered FORMERR.
func TestDNSReadsWhatItOffers(t *testing.T) {
	d := testDNS(t)
	for _, size := range []int{512, 513, 700, dnsUDPSize} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("pg-a.ambassador.", dns.TypeA)
			m.SetEdns0(dnsUDPSize, false)
			base, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			// An option header is 4 bytes.
			pad := &dns.EDNS0_PADDING{Padding: make([]byte, size-len(base)-4)}
			m.IsEdns0().Option = append(m.IsEdns0().Option, pad)
			pkt, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if len(pkt) != size {
				t.Fatalf("built a %d-byte query, want %d", len(pkt), size)
			}
			r, err := exchangeRaw("udp", d.Addr(), pkt, false)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Errorf("got rcode %s with %d answers, want NOERROR with 1", rcodeName(r.Rcode), len(r.Answer))
			}
		})
	}
}

// The apex has an NS record, as every zone must (RFC 1034 4.2.1): BIND's
// stub zones and unbound's primed stubs ask for it. It names the apex
// itself, the SOA's MNAME: any label under the zone can be a service
// (svcname allows "ns"), the apex cannot. The apex's A (AAAA for an IPv6
// server), also the NS answer's additional record, is where a local client
// reaches the server, as for a service (reachAt): the address it listens
// on, 127.0.0.1 for 0.0.0.0.
func TestDNSApex(t *testing.T) {
	const (
		ns  = "ambassador.\t5\tIN\tNS\tambassador."
		soa = "ambassador.\t5\tIN\tSOA\tambassador. hostmaster.ambassador. 1 3600 600 86400 5"
	)
	type query struct {
		qtype      uint16
		want       string // answer section
		wantExtra  string
		wantNODATA bool // NOERROR, no answer, the SOA in the authority section
	}
	for _, tc := range []struct {
		listen  string
		ipv6    bool
		queries []query
	}{
		{listen: "127.0.0.1:0", queries: []query{
			{qtype: dns.TypeNS, want: ns, wantExtra: "ambassador.\t5\tIN\tA\t127.0.0.1"},
			{qtype: dns.TypeA, want: "ambassador.\t5\tIN\tA\t127.0.0.1"},
			{qtype: dns.TypeAAAA, wantNODATA: true},
			{qtype: dns.TypeSOA, want: soa},
			{qtype: dns.TypeANY, want: soa + "\n" + ns + "\nambassador.\t5\tIN\tA\t127.0.0.1"},
		}},
		{listen: "0.0.0.0:0", queries: []query{
			{qtype: dns.TypeNS, want: ns, wantExtra: "ambassador.\t5\tIN\tA\t127.0.0.1"},
			{qtype: dns.TypeA, want: "ambassador.\t5\tIN\tA\t127.0.0.1"},
			{qtype: dns.TypeAAAA, wantNODATA: true},
			{qtype: dns.TypeANY, want: soa + "\n" + ns + "\nambassador.\t5\tIN\tA\t127.0.0.1"},
		}},
		{listen: "[::1]:0", ipv6: true, queries: []query{
			{qtype: dns.TypeNS, want: ns, wantExtra: "ambassador.\t5\tIN\tAAAA\t::1"},
			{qtype: dns.TypeAAAA, want: "ambassador.\t5\tIN\tAAAA\t::1"},
			{qtype: dns.TypeA, wantNODATA: true},
		}},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			if tc.ipv6 {
				if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			d := testDNSAt(t, tc.listen)
			_, port, _ := net.SplitHostPort(d.Addr())
			addr := net.JoinHostPort("127.0.0.1", port)
			if tc.ipv6 {
				addr = d.Addr()
			}
			for _, proto := range []string{"udp", "tcp"} {
				for _, q := range tc.queries {
					m := new(dns.Msg)
					m.SetQuestion("ambassador.", q.qtype)
					r, _, err := (&dns.Client{Net: proto}).Exchange(m, addr)
					if err != nil {
						t.Fatalf("%s %s: %v", proto, dns.TypeToString[q.qtype], err)
					}
					if r.Rcode != dns.RcodeSuccess || !r.Authoritative || rrs(r.Answer) != q.want || rrs(r.Extra) != q.wantExtra {
						t.Errorf("%s %s: got rcode %s AA %v answer %q extra %q; want NOERROR AA %q %q", proto, dns.TypeToString[q.qtype],
							rcodeName(r.Rcode), r.Authoritative, rrs(r.Answer), rrs(r.Extra), q.want, q.wantExtra)
					}
					if q.wantNODATA && rrs(r.Ns) != soa {
						t.Errorf("%s %s: got authority %q, want the SOA", proto, dns.TypeToString[q.qtype], rrs(r.Ns))
					}
				}
			}
			// The NS names the SOA's MNAME.
			if got := dnsSOA().Ns; !strings.Contains(ns, "NS\t"+got) {
				t.Errorf("the SOA's MNAME is %s, the NS names %s", got, ns)
			}
		})
	}
}

// miekg/dns's ActivateAndServe can fail before it calls
// NotifyStartedFunc: it sets socket options on the UDP socket first, and
// that fails on a closed one. startDNS waited for both servers' started
// notices only, so such a failure would hang the node's start for ever.
// It returns the error instead, once it has stopped the server that did
// start: its TCP port is closed again.
func TestDNSStartFailure(t *testing.T) {
	pc, ln, err := listenPair("127.0.0.1:0", net.Listen)
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := ln.Addr().String()
	pc.Close() // what miekg does first with it now fails
	done := make(chan error, 1)
	go func() {
		d, err := serveDNSOn(pc, ln, func(string) (named, bool) { return named{}, false }, slog.New(slog.DiscardHandler))
		if err == nil {
			d.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("serveDNSOn on a closed UDP socket succeeded, want its error")
		}
		t.Logf("got %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("serveDNSOn on a closed UDP socket still waiting after 5s")
	}
	// The TCP side, which had started, is closed again.
	if c, err := net.DialTimeout("tcp", tcpAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("TCP on %s still accepts after the failed start", tcpAddr)
	}
}

// Zone transfers are not offered: AXFR and IXFR are REFUSED (as unbound
// and BIND refuse a transfer they do not allow; RFC 5936 2.2.1), not
// answered NOERROR with no records, which is no transfer at all (RFC 5936
// 2.2: its first record must be the SOA). An IXFR carries the client's SOA
// in its authority section (RFC 1995 3), which is no FORMERR.
func TestDNSNoZoneTransfer(t *testing.T) {
	d := testDNS(t)
	clientSOA := dnsSOA()
	for _, tc := range []struct {
		qname string
		qtype uint16
		ns    []dns.RR
	}{
		{qname: "ambassador.", qtype: dns.TypeAXFR},
		{qname: "ambassador.", qtype: dns.TypeIXFR, ns: []dns.RR{clientSOA}},
		{qname: "ambassador.", qtype: dns.TypeIXFR},
		{qname: "pg-a.ambassador.", qtype: dns.TypeAXFR},
		{qname: "example.com.", qtype: dns.TypeAXFR},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(proto+" "+tc.qname+" "+dns.TypeToString[tc.qtype], func(t *testing.T) {
				m := new(dns.Msg)
				m.SetQuestion(tc.qname, tc.qtype)
				m.Ns = tc.ns
				m.SetEdns0(1232, false)
				pkt, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				r, err := exchangeRaw(proto, d.Addr(), pkt, false)
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 || r.IsEdns0() == nil {
					t.Errorf("got rcode %s answer %q OPT %v, want REFUSED, no answer, an OPT", rcodeName(r.Rcode), rrs(r.Answer), r.IsEdns0() != nil)
				}
			})
		}
	}
}

// Every request that miekg parses now reaches ServeDNS, whatever its
// opcode and section counts: each one gets exactly one reply that packs,
// with the request's ID, the QR bit, and an OPT exactly when the request
// had one.
func FuzzDNSServe(f *testing.F) {
	q := dns.Question{Name: "pg-a.ambassador.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	for _, m := range []*dns.Msg{
		{Question: []dns.Question{q}},
		{MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeUpdate}, Question: []dns.Question{q}},
		{Question: []dns.Question{q, q}},
		{Question: []dns.Question{{Name: "ambassador.", Qtype: dns.TypeANY, Qclass: dns.ClassINET}}},
		{Question: []dns.Question{{Name: "_redis._tcp.", Qtype: dns.TypeSRV, Qclass: dns.ClassINET}}},
		{Question: []dns.Question{{Name: "ambassador.", Qtype: dns.TypeIXFR, Qclass: dns.ClassINET}}, Ns: []dns.RR{dnsSOA()}},
		new(dns.Msg).SetEdns0(1232, true),
	} {
		if len(m.Question) > 0 && m.Question[0].Qtype == dns.TypeA {
			m.SetEdns0(1232, true)
		}
		pkt, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pkt)
	}
	known := map[string]named{
		"pg-a":  {Name: "pg-a", At: netip.MustParseAddrPort("127.71.38.10:5432")},
		"redis": {Name: "redis", At: netip.MustParseAddrPort("127.0.0.1:6379")},
		"pg6":   {Name: "pg6", At: netip.MustParseAddrPort("[::1]:5433")},
	}
	d := &dnsServer{lookup: func(name string) (named, bool) { n, ok := known[strings.ToLower(name)]; return n, ok },
		self: netip.MustParseAddr("127.0.0.1"), log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r := new(dns.Msg)
		if r.Unpack(pkt) != nil || r.Response {
			return // miekg's FORMERR, or dnsAccept's silence
		}
		w := &recordingWriter{}
		d.ServeDNS(w, r)
		if len(w.msgs) != 1 {
			t.Fatalf("%d replies, want 1", len(w.msgs))
		}
		m := w.msgs[0]
		if _, err := m.Pack(); err != nil {
			t.Fatalf("the reply does not pack: %v\n%v", err, m)
		}
		if m.Id != r.Id || !m.Response {
			t.Errorf("got ID %d QR %v, want ID %d QR true", m.Id, m.Response, r.Id)
		}
		if (r.IsEdns0() != nil) != (m.IsEdns0() != nil) {
			t.Errorf("request OPT %v, reply OPT %v: want both or neither", r.IsEdns0() != nil, m.IsEdns0() != nil)
		}
	})
}

// recordingWriter is a dns.ResponseWriter that keeps what ServeDNS writes.
type recordingWriter struct {
	dns.ResponseWriter // nil: only WriteMsg is called
	msgs               []*dns.Msg
}

func (w *recordingWriter) WriteMsg(m *dns.Msg) error {
	w.msgs = append(w.msgs, m)
	return nil
}
