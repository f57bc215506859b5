package announce

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

var (
	testID = identity{node: "Node-A", cluster: "lab", host: "node-a.local.", gossipPort: 7946, ttl: 120}
	// testAddr is the A record address of testID.
	testAddr  = netip.MustParseAddr("192.0.2.10")
	querier   = netip.MustParseAddrPort("192.0.2.5:5353")
	legacySrc = netip.MustParseAddrPort("192.0.2.5:40000")
)

func testZone(t testing.TB, id identity, svcs ...Service) *zone {
	t.Helper()
	z, err := newZone(id, testAddr, svcs)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func query(id uint16, name string, qtype uint16, class uint16) *dns.Msg {
	m := new(dns.Msg)
	m.Id = id
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: class}}
	return m
}

// types lists the record types of rrs, for compact comparison.
func types(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, dns.TypeToString[rr.Header().Rrtype])
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRespond(t *testing.T) {
	redis := Service{Name: "redis", Port: 6379}
	z := testZone(t, testID, redis)
	odd := testID
	odd.node = "my node.x"
	zOdd := testZone(t, odd, redis)

	known := query(0, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET)
	known.Answer = z.svcs[1].Records(dns.Question{Name: "_redis._tcp.local.", Qtype: dns.TypePTR})[:1]
	knownStale := query(0, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET)
	knownStale.Answer = []dns.RR{dns.Copy(known.Answer[0])}
	knownStale.Answer[0].Header().Ttl = 10
	response := query(0, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET)
	response.Response = true

	tests := []struct {
		name      string
		z         *zone
		query     *dns.Msg
		src       netip.AddrPort
		wantDst   netip.AddrPort // invalid: no reply
		wantAns   []string
		wantExtra []string
		legacy    bool // ID kept, question copied, TTL <= 10, no cache flush
		unicast   bool // sent to our unicast address
	}{
		{name: "direct unicast from 5353", z: z, query: query(0, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET), src: querier, unicast: true,
			wantDst: querier, wantAns: []string{"PTR"}, wantExtra: []string{"SRV", "A", "TXT"}},
		{name: "direct legacy unicast", z: z, query: query(99, "node-a.local.", dns.TypeA, dns.ClassINET), src: legacySrc, unicast: true,
			wantDst: legacySrc, wantAns: []string{"A"}, legacy: true},
		{name: "legacy unicast PTR", z: z, query: query(0x1234, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET), src: legacySrc,
			wantDst: legacySrc, wantAns: []string{"PTR"}, wantExtra: []string{"SRV", "A", "TXT"}, legacy: true},
		{name: "legacy unicast with QU bit", z: z, query: query(7, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET|cacheFlush), src: legacySrc,
			wantDst: legacySrc, wantAns: []string{"PTR"}, wantExtra: []string{"SRV", "A", "TXT"}, legacy: true},
		{name: "QU", z: z, query: query(0, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET|cacheFlush), src: querier,
			wantDst: querier, wantAns: []string{"PTR"}, wantExtra: []string{"SRV", "A", "TXT"}},
		{name: "multicast PTR", z: z, query: query(0, "_ambassador._tcp.local.", dns.TypePTR, dns.ClassINET), src: querier,
			wantDst: mdnsGroup, wantAns: []string{"PTR"}, wantExtra: []string{"SRV", "A", "TXT"}},
		{name: "case-insensitive", z: z, query: query(0, "_REDIS._Tcp.LOCAL.", dns.TypePTR, dns.ClassINET), src: querier,
			wantDst: mdnsGroup, wantAns: []string{"PTR"}, wantExtra: []string{"SRV", "A", "TXT"}},
		{name: "SRV of instance", z: z, query: query(0, "node-a._redis._tcp.local.", dns.TypeSRV, dns.ClassINET), src: querier,
			wantDst: mdnsGroup, wantAns: []string{"SRV"}, wantExtra: []string{"A"}},
		{name: "ANY of instance", z: z, query: query(0, "Node-A._ambassador._tcp.local.", dns.TypeANY, dns.ClassANY), src: querier,
			wantDst: mdnsGroup, wantAns: []string{"SRV", "TXT"}, wantExtra: []string{"A"}},
		{name: "A of host", z: z, query: query(0, "NODE-A.local.", dns.TypeA, dns.ClassINET), src: querier,
			wantDst: mdnsGroup, wantAns: []string{"A"}},
		{name: "ANY of host", z: z, query: query(0, "node-a.local.", dns.TypeANY, dns.ClassINET), src: querier,
			wantDst: mdnsGroup, wantAns: []string{"A"}},
		{name: "service enumeration", z: z, query: query(0, "_services._dns-sd._udp.local.", dns.TypePTR, dns.ClassINET), src: querier,
			wantDst: mdnsGroup, wantAns: []string{"PTR", "PTR"}},
		{name: "escaped instance", z: zOdd, query: query(0, `my\ node\.x._redis._tcp.local.`, dns.TypeTXT, dns.ClassINET), src: querier,
			wantDst: mdnsGroup, wantAns: []string{"TXT"}},
		{name: "no AAAA", z: z, query: query(0, "node-a.local.", dns.TypeAAAA, dns.ClassINET), src: querier},
		{name: "A of instance is not an answer", z: z, query: query(0, "node-a._redis._tcp.local.", dns.TypeA, dns.ClassINET), src: querier},
		{name: "wrong name", z: z, query: query(0, "_http._tcp.local.", dns.TypePTR, dns.ClassINET), src: querier},
		{name: "wrong class", z: z, query: query(0, "_redis._tcp.local.", dns.TypePTR, dns.ClassCHAOS), src: querier},
		{name: "no question", z: z, query: new(dns.Msg), src: querier},
		{name: "response", z: z, query: response, src: querier},
		{name: "known answer", z: z, query: known, src: querier},
		{name: "stale known answer", z: z, query: knownStale, src: querier,
			wantDst: mdnsGroup, wantAns: []string{"PTR"}, wantExtra: []string{"SRV", "A", "TXT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, dst := respond(tt.z, tt.query, tt.src, tt.unicast)
			if !tt.wantDst.IsValid() {
				if reply != nil {
					t.Fatalf("reply %v, want none", reply)
				}
				return
			}
			if reply == nil {
				t.Fatal("no reply")
			}
			if dst != tt.wantDst {
				t.Errorf("dst %v, want %v", dst, tt.wantDst)
			}
			if got := types(reply.Answer); !equalStrings(got, tt.wantAns) {
				t.Errorf("answers %v, want %v", got, tt.wantAns)
			}
			if got := types(reply.Extra); !equalStrings(got, tt.wantExtra) {
				t.Errorf("additional %v, want %v", got, tt.wantExtra)
			}
			if !reply.Response || !reply.Authoritative {
				t.Errorf("QR %v AA %v, want both", reply.Response, reply.Authoritative)
			}
			wire, err := reply.Pack()
			if err != nil {
				t.Fatal(err)
			}
			var got dns.Msg
			if err := got.Unpack(wire); err != nil {
				t.Fatal(err)
			}
			all := append(append([]dns.RR{}, got.Answer...), got.Extra...)
			if tt.legacy {
				if got.Id != tt.query.Id {
					t.Errorf("ID %#x, want %#x", got.Id, tt.query.Id)
				}
				if len(got.Question) != 1 || got.Question[0] != tt.query.Question[0] {
					t.Errorf("question %v, want %v", got.Question, tt.query.Question)
				}
				for _, rr := range all {
					if h := rr.Header(); h.Ttl > legacyTTL || h.Class != dns.ClassINET {
						t.Errorf("%v: want TTL <= %d and class IN without cache flush", rr, legacyTTL)
					}
				}
				return
			}
			if got.Id != 0 || len(got.Question) != 0 {
				t.Errorf("ID %d, %d questions; want 0, 0", got.Id, len(got.Question))
			}
			for _, rr := range all {
				h := rr.Header()
				wantClass := uint16(dns.ClassINET | cacheFlush)
				if h.Rrtype == dns.TypePTR {
					wantClass = dns.ClassINET
				}
				if h.Class != wantClass || h.Ttl != testID.ttl {
					t.Errorf("%v: class %#x TTL %d, want %#x, %d", rr, h.Class, h.Ttl, wantClass, testID.ttl)
				}
			}
		})
	}
}

func TestNewZoneNeedsIPv4(t *testing.T) {
	for _, addr := range []netip.Addr{{}, netip.MustParseAddr("2001:db8::1")} {
		if _, err := newZone(testID, addr, nil); err == nil {
			t.Errorf("newZone(%v): no error", addr)
		}
	}
}

func TestAnnouncementAndGoodbye(t *testing.T) {
	z := testZone(t, testID, Service{Name: "redis", Port: 6379}, Service{Name: "web", Port: 80})
	m := announcement(z.records(nil, true))
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var got dns.Msg
	if err := got.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	if !got.Response || got.Id != 0 || len(got.Question) != 0 {
		t.Errorf("header: QR %v ID %d questions %d", got.Response, got.Id, len(got.Question))
	}
	count := map[uint16]int{}
	for _, rr := range got.Answer {
		h := rr.Header()
		count[h.Rrtype]++
		flush := h.Class&cacheFlush != 0
		if flush != (h.Rrtype != dns.TypePTR) {
			t.Errorf("%v: cache flush %v", rr, flush)
		}
		if h.Ttl != testID.ttl {
			t.Errorf("%v: TTL %d", rr, h.Ttl)
		}
	}
	// 3 enumeration PTRs + 3 service PTRs, one SRV and TXT each, one A.
	want := map[uint16]int{dns.TypePTR: 6, dns.TypeSRV: 3, dns.TypeTXT: 3, dns.TypeA: 1}
	for typ, n := range want {
		if count[typ] != n {
			t.Errorf("%d %s records, want %d", count[typ], dns.TypeToString[typ], n)
		}
	}

	only := func(t string) bool { return t == "_redis._tcp.local." }
	bye := goodbye(z.records(only, false))
	if len(bye.Answer) != 3 {
		t.Errorf("goodbye of one service has %v, want PTR SRV TXT", types(bye.Answer))
	}
	for _, rr := range bye.Answer {
		if rr.Header().Ttl != 0 {
			t.Errorf("goodbye %v: TTL %d, want 0", rr, rr.Header().Ttl)
		}
		if rr.Header().Rrtype == dns.TypeA || rr.Header().Name == "Node-A._ambassador._tcp.local." {
			t.Errorf("goodbye of redis carries %v", rr)
		}
		if equalName(rr.Header().Name, enumFQDN) {
			t.Errorf("goodbye carries the shared enumeration record %v", rr)
		}
	}
	// Everything but the 3 enumeration PTRs.
	if all := goodbye(z.records(nil, true)); len(all.Answer) != len(m.Answer)-3 {
		t.Errorf("goodbye of everything has %d records, want %d", len(all.Answer), len(m.Answer)-3)
	}
}

func TestPeerQuery(t *testing.T) {
	m := peerQuery(false, nil)
	if m.Id != 0 || m.RecursionDesired || m.Response || len(m.Question) != 1 {
		t.Fatalf("query %v", m)
	}
	if q := m.Question[0]; q.Name != "_ambassador._tcp.local." || q.Qtype != dns.TypePTR || q.Qclass != dns.ClassINET {
		t.Errorf("question %v", q)
	}
}

func TestLabels(t *testing.T) {
	for _, node := range []string{"a", "my node.x", `a'b@c;d(e)f`, "Node-A"} {
		esc := escapeLabel(node)
		// miekg/dns must read it back as one label with the same bytes.
		name := esc + "._x._tcp.local."
		m := query(0, name, dns.TypeA, dns.ClassINET)
		wire, err := m.Pack()
		if err != nil {
			t.Fatalf("%q: pack: %v", node, err)
		}
		var got dns.Msg
		if err := got.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		if got.Question[0].Name != name {
			t.Errorf("%q: escaped %q, miekg/dns reads %q", node, name, got.Question[0].Name)
		}
		label, rest, ok := firstLabel(got.Question[0].Name)
		if !ok || label != node || rest != "_x._tcp.local." {
			t.Errorf("firstLabel(%q) = %q, %q, %v", got.Question[0].Name, label, rest, ok)
		}
	}
	for _, bad := range []string{"", "nodot", `trailing\`, `\999.x`} {
		if l, r, ok := firstLabel(bad); ok {
			t.Errorf("firstLabel(%q) = %q, %q, true", bad, l, r)
		}
	}
	if l, _, ok := firstLabel(`\065b.x`); !ok || l != "Ab" {
		t.Errorf(`firstLabel(\065b.x) = %q, %v`, l, ok)
	}
}
