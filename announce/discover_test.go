package announce

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	peerB     = identity{node: "b", cluster: "lab", host: "b.local.", gossipPort: 8000, ttl: 120}
	peerBAddr = netip.MustParseAddr("192.0.2.20")
	peerSrc   = netip.MustParseAddrPort("192.0.2.99:5353")
	t0        = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

// announce returns what id announces with addr.
func announceOf(t testing.TB, id identity, addr netip.Addr) *dns.Msg {
	t.Helper()
	z, err := newZone(id, addr, []Service{{Name: "redis", Port: 6379}})
	if err != nil {
		t.Fatal(err)
	}
	return announcement(z.records(nil, true))
}

// without returns a copy of m without records of type typ.
func without(m *dns.Msg, typ uint16) *dns.Msg {
	c := m.Copy()
	var keep []dns.RR
	for _, rr := range c.Answer {
		if rr.Header().Rrtype != typ {
			keep = append(keep, rr)
		}
	}
	c.Answer = keep
	return c
}

// only returns a copy of m with only records of type typ.
func only(m *dns.Msg, typ uint16) *dns.Msg {
	c := m.Copy()
	var keep []dns.RR
	for _, rr := range c.Answer {
		if rr.Header().Rrtype == typ {
			keep = append(keep, rr)
		}
	}
	c.Answer = keep
	return c
}

func newTestDiscovery() *discovery { return newDiscovery("a", "lab") }

func wantPeers(t *testing.T, got []Peer, want ...Peer) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("peers %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("peer %+v, want %+v", got[i], want[i])
		}
	}
}

func TestParseAnnouncement(t *testing.T) {
	d := newTestDiscovery()
	got := d.parse(announceOf(t, peerB, peerBAddr), peerSrc, "eth0", t0)
	wantPeers(t, got, Peer{Node: "b", Cluster: "lab", Addr: peerBAddr, GossipPort: 8000, Iface: "eth0"})
	if !d.seen {
		t.Error("seen not set")
	}
}

func TestParseReply(t *testing.T) {
	// A multicast reply to our query: PTR in answers, the rest additional.
	z := testZone(t, peerB)
	reply, _ := respond(z, peerQuery(false, nil), querier, false)
	if reply == nil {
		t.Fatal("no reply")
	}
	got := newTestDiscovery().parse(reply, peerSrc, "eth0", t0)
	wantPeers(t, got, Peer{Node: "b", Cluster: "lab", Addr: testAddr, GossipPort: 8000, Iface: "eth0"})
}

func TestParseACachedAcrossPackets(t *testing.T) {
	d := newTestDiscovery()
	full := announceOf(t, peerB, peerBAddr)
	want := Peer{Node: "b", Cluster: "lab", Addr: peerBAddr, GossipPort: 8000, Iface: "eth0"}
	wantPeers(t, d.parse(full, peerSrc, "eth0", t0), want)
	// A later packet without the A record uses the cached address.
	d.reset()
	wantPeers(t, d.parse(without(full, dns.TypeA), peerSrc, "eth0", t0.Add(time.Second)), want)

	// Once the A record expired, the source address is used.
	d.reset()
	got := d.parse(without(full, dns.TypeA), peerSrc, "eth0", t0.Add(121*time.Second))
	wantPeers(t, got, Peer{Node: "b", Cluster: "lab", Addr: peerSrc.Addr(), GossipPort: 8000, Iface: "eth0"})

	// A goodbye for the A record forgets it.
	d = newTestDiscovery()
	d.parse(full, peerSrc, "eth0", t0)
	d.parse(goodbye(only(full, dns.TypeA).Answer), peerSrc, "eth0", t0)
	d.reset()
	got = d.parse(without(full, dns.TypeA), peerSrc, "eth0", t0)
	wantPeers(t, got, Peer{Node: "b", Cluster: "lab", Addr: peerSrc.Addr(), GossipPort: 8000, Iface: "eth0"})
}

func TestParseACacheOnlyPeerTargets(t *testing.T) {
	full := announceOf(t, peerB, peerBAddr)
	srcPeer := Peer{Node: "b", Cluster: "lab", Addr: peerSrc.Addr(), GossipPort: 8000, Iface: "eth0"}

	// An A record alone, before any SRV names its host, is not cached.
	d := newTestDiscovery()
	d.parse(only(full, dns.TypeA), peerSrc, "eth0", t0)
	if len(d.hosts) != 0 {
		t.Errorf("hosts %v after a lone A record, want none", d.hosts)
	}
	wantPeers(t, d.parse(without(full, dns.TypeA), peerSrc, "eth0", t0), srcPeer)

	// Hosts of other services are not cached either.
	other := announceOf(t, identity{node: "x", cluster: "lab", host: "x.local.", gossipPort: 1, ttl: 120}, peerBAddr)
	var keep []dns.RR
	for _, rr := range other.Answer {
		if !isPeerInstance(rr.Header().Name) && !equalName(rr.Header().Name, peerFQDN) {
			keep = append(keep, rr)
		}
	}
	other.Answer = keep
	d = newTestDiscovery()
	d.parse(other, peerSrc, "eth0", t0)
	if _, ok := d.hosts["x.local."]; ok {
		t.Error("cached the host of a non-peer service")
	}

	// A TTL beyond maxHostTTL is capped.
	long := full.Copy()
	for _, rr := range long.Answer {
		rr.Header().Ttl = 3600
	}
	d = newTestDiscovery()
	d.parse(long, peerSrc, "eth0", t0)
	d.reset()
	got := d.parse(without(full, dns.TypeA), peerSrc, "eth0", t0.Add(maxHostTTL))
	wantPeers(t, got, srcPeer)
}

func TestParseSourceFallback(t *testing.T) {
	full := without(announceOf(t, peerB, peerBAddr), dns.TypeA)
	got := newTestDiscovery().parse(full, peerSrc, "eth1", t0)
	wantPeers(t, got, Peer{Node: "b", Cluster: "lab", Addr: peerSrc.Addr(), GossipPort: 8000, Iface: "eth1"})

	// No address at all: an IPv6 source and no A record.
	v6 := netip.MustParseAddrPort("[fe80::1]:5353")
	if got := newTestDiscovery().parse(full, v6, "eth1", t0); len(got) != 0 {
		t.Errorf("IPv6 source gave %+v", got)
	}
	// An IPv4-mapped source is fine.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(peerSrc.Addr().As16()), 5353)
	got = newTestDiscovery().parse(full, mapped, "eth1", t0)
	wantPeers(t, got, Peer{Node: "b", Cluster: "lab", Addr: peerSrc.Addr(), GossipPort: 8000, Iface: "eth1"})
}

func TestParseFilters(t *testing.T) {
	other := peerB
	other.cluster = "other"
	self := peerB
	self.node = "a"
	full := announceOf(t, peerB, peerBAddr)
	query := full.Copy()
	query.Response = false
	noPort := full.Copy()
	for _, rr := range noPort.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			txt.Txt = []string{"cluster=lab", "gossip=abc"}
		}
	}
	twoClusters := full.Copy()
	for _, rr := range twoClusters.Answer {
		if txt, ok := rr.(*dns.TXT); ok && txt.Hdr.Name == "b._ambassador._tcp.local." {
			txt.Txt = []string{"CLUSTER=other", "cluster=lab", "gossip=8000"}
		}
	}
	wrongSuffix := full.Copy()
	for _, rr := range wrongSuffix.Answer {
		if rr.Header().Rrtype == dns.TypeTXT {
			rr.Header().Name = "b._other._tcp.local."
		}
	}

	tests := []struct {
		name string
		msg  *dns.Msg
	}{
		{"other cluster", announceOf(t, other, peerBAddr)},
		{"self", announceOf(t, self, peerBAddr)},
		{"query", query},
		{"goodbye", goodbye(announceOf(t, peerB, peerBAddr).Answer)},
		{"no TXT", without(full, dns.TypeTXT)},
		{"bad gossip port", noPort},
		{"first key wins", twoClusters},
		{"TXT of another service", wrongSuffix},
		{"empty", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newTestDiscovery().parse(tt.msg, peerSrc, "eth0", t0); len(got) != 0 {
				t.Errorf("peers %+v, want none", got)
			}
		})
	}
}

func TestParseDedupe(t *testing.T) {
	d := newTestDiscovery()
	m := announceOf(t, peerB, peerBAddr)
	want := Peer{Node: "b", Cluster: "lab", Addr: peerBAddr, GossipPort: 8000, Iface: "eth0"}
	wantPeers(t, d.parse(m, peerSrc, "eth0", t0), want)
	wantPeers(t, d.parse(m, peerSrc, "eth0", t0.Add(time.Second)))
	wantPeers(t, d.parse(m, peerSrc, "eth0", t0.Add(reportEvery)), want)
	d.reset()
	wantPeers(t, d.parse(m, peerSrc, "eth0", t0.Add(reportEvery)), want)
	// A new address is a new peer.
	wantPeers(t, d.parse(announceOf(t, peerB, testAddr), peerSrc, "eth0", t0.Add(reportEvery)),
		Peer{Node: "b", Cluster: "lab", Addr: testAddr, GossipPort: 8000, Iface: "eth0"})
}

func TestParseEscapedNode(t *testing.T) {
	odd := peerB
	odd.node = "b.x y"
	got := newTestDiscovery().parse(announceOf(t, odd, peerBAddr), peerSrc, "eth0", t0)
	wantPeers(t, got, Peer{Node: "b.x y", Cluster: "lab", Addr: peerBAddr, GossipPort: 8000, Iface: "eth0"})
}

func TestHostCacheBounded(t *testing.T) {
	d := newTestDiscovery()
	for i := range maxHosts + 10 {
		name := fmt.Sprintf("h%d.local.", i)
		d.want(name, 120, t0)
		d.learn(name, []byte{10, 0, 0, 1}, 120, t0)
	}
	if len(d.hosts) > maxHosts {
		t.Errorf("%d hosts cached, limit %d", len(d.hosts), maxHosts)
	}
	// Stale entries go at the next sweep, not on every packet.
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}}
	swept := t0.Add(maxHostTTL - time.Second)
	d.parse(m, peerSrc, "eth0", swept) // the first parse sweeps
	d.parse(m, peerSrc, "eth0", t0.Add(maxHostTTL))
	if len(d.hosts) != maxHosts {
		t.Errorf("%d hosts right after a sweep, want %d kept until the next", len(d.hosts), maxHosts)
	}
	d.parse(m, peerSrc, "eth0", swept.Add(sweepEvery))
	if len(d.hosts) != 0 {
		t.Errorf("%d hosts after expiry", len(d.hosts))
	}
}

// fuzzSeeds are packets from the table tests.
func fuzzSeeds(t testing.TB) [][]byte {
	z := testZone(t, peerB, Service{Name: "redis", Port: 6379})
	reply, _ := respond(z, peerQuery(false, nil), querier, false)
	msgs := []*dns.Msg{
		announceOf(t, peerB, peerBAddr),
		goodbye(z.records(nil, true)),
		reply,
		peerQuery(false, nil),
		query(0x1234, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET|cacheFlush),
	}
	var out [][]byte
	for _, m := range msgs {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, nil, []byte{0, 0, 0x84, 0, 0, 0, 0, 1})
}

func FuzzParseResponse(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	z := testZone(f, testID, Service{Name: "redis", Port: 6379})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m dns.Msg
		if m.Unpack(b) != nil {
			return
		}
		d := newTestDiscovery()
		for _, p := range d.parse(&m, peerSrc, "eth0", t0) {
			if p.Node == "" || p.Node == "a" || p.Cluster != "lab" || !p.Addr.Is4() || p.GossipPort < 1 || p.GossipPort > 65535 {
				t.Errorf("bad peer %+v", p)
			}
		}
		for _, src := range []netip.AddrPort{querier, legacySrc} {
			for _, unicast := range []bool{false, true} {
				if reply, _ := respond(z, &m, src, unicast); reply != nil {
					if _, err := reply.Pack(); err != nil {
						t.Errorf("reply does not pack: %v", err)
					}
				}
			}
		}
	})
}

// TestReportedBounded: every peer reported is remembered for reportEvery
// (reported), and a response is network input: a host on the link that
// floods responses naming made-up nodes of our cluster (its name is in
// every announcement) must not grow that map without bound between two
// sweeps (sweepEvery apart), as the A and PTR caches do not (maxHosts).
func TestReportedBounded(t *testing.T) {
	d := newTestDiscovery()
	now := t0
	d.parse(&dns.Msg{MsgHdr: dns.MsgHdr{Response: true}}, peerSrc, "eth0", now) // the sweep
	for p := range 50 {
		m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}}
		for i := range 100 {
			m.Answer = append(m.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: fmt.Sprintf("n%d-%d.%s", p, i, peerFQDN), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 120},
				Txt: []string{"cluster=lab", "gossip=7946"},
			})
		}
		now = now.Add(100 * time.Millisecond) // 5 s of flood: no sweep
		d.parse(m, peerSrc, "eth0", now)
	}
	if got := len(d.reported); got > maxHosts {
		t.Errorf("%d reported peers remembered after 5 s of flood, want at most %d", got, maxHosts)
	}
	// Once the flood's entries are older than reportEvery, a real peer
	// is reported again without waiting for the regular sweep.
	b := identity{node: "b", cluster: "lab", host: "b.local.", gossipPort: 7946, ttl: 120}
	got := d.parse(announceOf(t, b, netip.MustParseAddr("192.0.2.20")), peerSrc, "eth0", now.Add(reportEvery))
	wantPeers(t, got, Peer{Node: "b", Cluster: "lab", Addr: netip.MustParseAddr("192.0.2.20"), GossipPort: 7946, Iface: "eth0"})
}
