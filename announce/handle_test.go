package announce

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// These tests drive a Server without the network: one socket whose
// datagrams go to Server.write, which the harness swaps for a recorder.

var (
	fakeLocal = netip.MustParseAddr("192.0.2.10")
	fakeNet   = netip.MustParsePrefix("192.0.2.10/24")
	onLinkSrc = netip.MustParseAddrPort("192.0.2.5:5353")
	offLink   = netip.MustParseAddrPort("198.51.100.5:5353")
)

// sentMsg is one datagram the Server would have sent.
type sentMsg struct {
	m   *dns.Msg
	b   []byte
	dst netip.AddrPort
}

// harness is a Server with one socket, fake, that is not started.
type harness struct {
	t    *testing.T
	s    *Server
	so   *socket
	sent chan sentMsg
}

// newHarness returns a Server publishing svcs on one socket "eth0" with
// address fakeLocal in fakeNet. The socket's conns are real but unused
// (Close closes them); whatever the Server sends arrives on h.sent.
func newHarness(t *testing.T, svcs ...Service) *harness {
	t.Helper()
	c := validConfig()
	c.Logger = testLogger(t)
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, s: s, sent: make(chan sentMsg, 64)}
	s.write = func(_ *net.UDPConn, b []byte, dst netip.AddrPort) error {
		var m dns.Msg
		if err := m.Unpack(b); err != nil {
			t.Errorf("sent a malformed packet: %v", err)
			return nil
		}
		select {
		case h.sent <- sentMsg{&m, slices.Clone(b), dst}:
		default:
			t.Errorf("more than %d packets sent", cap(h.sent))
		}
		return nil
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h.so = &socket{iface: "eth0", index: 2, conn: conn, local: fakeLocal, addr: fakeLocal,
		nets: []netip.Prefix{fakeNet}}
	s.SetServices(svcs)
	s.mu.Lock()
	s.socks[h.so.iface] = h.so
	s.logZoneErrors(s.buildZonesLocked(h.so))
	s.mu.Unlock()
	t.Cleanup(func() { s.Close() })
	return h
}

// receive hands packet m to the socket as if it came from src.
func (h *harness) receive(m *dns.Msg, src netip.AddrPort, unicast bool) {
	h.t.Helper()
	b, err := m.Pack()
	if err != nil {
		h.t.Fatal(err)
	}
	h.s.handle(h.so, h.so.conn, b, src, unicast)
}

// none fails if anything was sent. Only for paths that send at once.
func (h *harness) none(what string) {
	h.t.Helper()
	select {
	case got := <-h.sent:
		h.t.Errorf("%s: sent to %v:\n%v", what, got.dst, got.m)
	default:
	}
}

// next returns the next datagram sent, waiting for delayed ones.
func (h *harness) next(what string) sentMsg {
	h.t.Helper()
	select {
	case got := <-h.sent:
		return got
	case <-time.After(waitFor):
		h.t.Fatalf("%s: nothing sent", what)
		return sentMsg{}
	}
}

func TestOffLinkSourceDropped(t *testing.T) {
	h := newHarness(t, Service{Name: "redis", Port: 6379})
	srvQuery := query(0, "node-a.local.", dns.TypeA, dns.ClassINET)
	announce := announceOf(t, peerB, peerBAddr)

	tests := []struct {
		name    string
		msg     *dns.Msg
		src     netip.AddrPort
		unicast bool
		want    bool // a reply or a peer
	}{
		{"direct query on link", srvQuery, onLinkSrc, true, true},
		{"direct query off link", srvQuery, offLink, true, false},
		{"legacy query off link", srvQuery, netip.AddrPortFrom(offLink.Addr(), 40000), true, false},
		{"multicast query off link", srvQuery, offLink, false, false},
		{"link-local source", srvQuery, netip.MustParseAddrPort("169.254.7.7:5353"), true, true},
		{"IPv6 source", srvQuery, netip.MustParseAddrPort("[2001:db8::1]:5353"), true, false},
		{"response on link", announce, onLinkSrc, false, true},
		{"response off link", announce, offLink, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.msg.Pack()
			if err != nil {
				t.Fatal(err)
			}
			h.s.disc.reset()
			h.s.mu.Lock()
			in, err := h.s.receiveLocked(h.so, b, tt.src, tt.unicast, t0)
			h.s.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if got := in.reply != nil || len(in.peers) > 0; got != tt.want {
				t.Errorf("reply %v, peers %v; want any: %v", in.reply, in.peers, tt.want)
			}
		})
	}

	// lo carries only this host's packets, from any of its addresses.
	h.so.loopback = true
	h.s.mu.Lock()
	b, _ := srvQuery.Pack()
	if in, _ := h.s.receiveLocked(h.so, b, offLink, true, t0); in.reply == nil {
		t.Error("loopback: no reply to a local source outside lo's prefix")
	}
	h.so.loopback = false
	h.s.mu.Unlock()

	// Through the socket handler: the off-link query gets no datagram.
	h.receive(srvQuery, offLink, true)
	h.none("off-link direct query")
	h.receive(srvQuery, onLinkSrc, true)
	if got := h.next("on-link direct query"); got.dst != onLinkSrc {
		t.Errorf("reply to %v, want %v", got.dst, onLinkSrc)
	}
}

// started marks h's Server started, as Start would, without run: pending
// work is driven by hand.
func (h *harness) started() {
	h.s.mu.Lock()
	h.s.started = true
	h.s.mu.Unlock()
}

// rec names one record for checkGoodbye.
type rec struct {
	name string
	typ  uint16
}

// checkGoodbye fails unless m withdraws (TTL 0) the records in want and
// nothing named in notWant, and carries no service enumeration record.
func checkGoodbye(t *testing.T, m *dns.Msg, want []rec, notWant ...string) {
	t.Helper()
	for _, r := range want {
		if !hasRR(m, r.name, r.typ, 0) {
			t.Errorf("goodbye lacks %s %s with TTL 0:\n%v", r.name, dns.TypeToString[r.typ], m)
		}
	}
	for _, name := range append(notWant, enumFQDN) {
		for _, rr := range m.Answer {
			if equalName(rr.Header().Name, name) {
				t.Errorf("goodbye carries %v", rr)
			}
		}
	}
	for _, rr := range m.Answer {
		if rr.Header().Ttl != 0 {
			t.Errorf("goodbye record %v has TTL %d", rr, rr.Header().Ttl)
		}
	}
}

func TestWithdrawalGoodbyeOwnRecordsOnly(t *testing.T) {
	h := newHarness(t, Service{Name: "redis", Port: 6379}, Service{Name: "web", Port: 80})
	h.started()
	h.s.SetServices([]Service{{Name: "web", Port: 80}})
	h.s.sendGoodbyes()
	got := h.next("goodbye")
	if got.dst != mdnsGroup {
		t.Errorf("goodbye to %v, want %v", got.dst, mdnsGroup)
	}
	checkGoodbye(t, got.m, []rec{
		{"_redis._tcp.local.", dns.TypePTR},
		{`Node\ A._redis._tcp.local.`, dns.TypeSRV},
		{`Node\ A._redis._tcp.local.`, dns.TypeTXT},
	}, "_web._tcp.local.", `Node\ A._web._tcp.local.`, "node-a.local.", peerFQDN, `Node\ A._ambassador._tcp.local.`)
	h.none("one goodbye only")
}

func TestCloseSendsPendingGoodbyes(t *testing.T) {
	h := newHarness(t, Service{Name: "redis", Port: 6379}, Service{Name: "web", Port: 80})
	h.started()
	// No run goroutine: the withdrawal's goodbye is still pending at Close.
	h.s.SetServices([]Service{{Name: "web", Port: 80}})
	h.s.SetServices(nil)
	if err := h.s.Close(); err != nil {
		t.Fatal(err)
	}
	got := h.next("goodbye")
	checkGoodbye(t, got.m, []rec{
		{"_redis._tcp.local.", dns.TypePTR},
		{`Node\ A._redis._tcp.local.`, dns.TypeSRV},
		{"_web._tcp.local.", dns.TypePTR},
		{`Node\ A._web._tcp.local.`, dns.TypeTXT},
		{peerFQDN, dns.TypePTR},
		{`Node\ A._ambassador._tcp.local.`, dns.TypeSRV},
		{"node-a.local.", dns.TypeA},
	})
	h.none("one goodbye only")
}

func TestOwnQueryIgnored(t *testing.T) {
	h := newHarness(t)
	h.s.query(h.so)
	q := h.next("peer query")
	self := netip.AddrPortFrom(fakeLocal, mdnsPort)

	answer := func() bool {
		t.Helper()
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		in, err := h.s.receiveLocked(h.so, q.b, self, false, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return in.reply != nil
	}
	if answer() {
		t.Error("answered our own looped-back query")
	}
	// The same bytes again are someone else's query (another responder on
	// this host asks the very same question from the same address).
	if !answer() {
		t.Error("did not answer an identical query from another querier")
	}
	// A query we sent long ago is no longer expected back.
	h.s.query(h.so)
	h.next("second peer query")
	h.s.mu.Lock()
	in, _ := h.s.receiveLocked(h.so, q.b, self, false, time.Now().Add(ownQueryWindow))
	h.s.mu.Unlock()
	if in.reply == nil {
		t.Error("ignored a query matching one we sent long ago")
	}
}

func TestMulticastRateLimit(t *testing.T) {
	h := newHarness(t, Service{Name: "redis", Port: 6379})
	clock := t0
	h.s.now = func() time.Time { return clock }
	aQuery := query(0, "node-a.local.", dns.TypeA, dns.ClassINET)

	h.receive(aQuery, onLinkSrc, false)
	if got := h.next("first answer"); got.dst != mdnsGroup || !hasRR(got.m, "node-a.local.", dns.TypeA, -1) {
		t.Fatalf("first answer to %v:\n%v", got.dst, got.m)
	}
	clock = t0.Add(multicastGap - time.Millisecond)
	h.receive(aQuery, onLinkSrc, false)
	h.none("same record within 1s")
	clock = t0.Add(multicastGap)
	h.receive(aQuery, onLinkSrc, false)
	h.next("answer after 1s")

	// A first announcement counts too, and holds back a multicast answer;
	// a unicast answer is never held back.
	clock = t0.Add(10 * time.Second)
	h.s.sendRecords(h.so, h.so.zone.records(nil, true), sendAnnounce)
	if got := h.next("announcement"); !hasRR(got.m, "node-a.local.", dns.TypeA, 120) {
		t.Fatalf("announcement lacks the A record:\n%v", got.m)
	}
	clock = clock.Add(500 * time.Millisecond)
	h.receive(aQuery, onLinkSrc, false)
	h.none("answer right after the announcement")
	h.s.sendRecords(h.so, h.so.zone.records(nil, true), sendAnnounce)
	h.none("announcement of records sent 0.5s ago")
	clock = clock.Add(500 * time.Millisecond)
	h.s.sendRecords(h.so, h.so.zone.records(nil, true), sendAnnounce)
	h.next("second announcement, 1s after the first")
	h.receive(aQuery, onLinkSrc, true)
	if got := h.next("direct unicast answer"); got.dst != onLinkSrc {
		t.Errorf("direct answer to %v, want %v", got.dst, onLinkSrc)
	}

	// A goodbye is never held back, and a record re-added after it is
	// announced at once.
	h.s.sendRecords(h.so, h.so.zone.records(nil, true), sendGoodbye)
	h.next("goodbye")
	h.s.sendRecords(h.so, h.so.zone.records(nil, true), sendAnnounce)
	h.next("announcement after goodbye")
}

func TestSharedAnswerDelayed(t *testing.T) {
	h := newHarness(t, Service{Name: "redis", Port: 6379})
	start := time.Now()
	h.receive(query(0, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET), onLinkSrc, false)
	h.receive(query(0, "_ambassador._tcp.local.", dns.TypePTR, dns.ClassINET), onLinkSrc, false)
	got := h.next("PTR answer")
	if waited := time.Since(start); waited < sharedDelay {
		t.Errorf("PTR answer after %v, want at least %v", waited, sharedDelay)
	}
	if got.dst != mdnsGroup || !hasRR(got.m, "_redis._tcp.local.", dns.TypePTR, -1) {
		t.Errorf("answer to %v:\n%v", got.dst, got.m)
	}
	// The second answer joins the first unless the first left before the
	// second query came in (a slow machine).
	if !hasRR(got.m, peerFQDN, dns.TypePTR, -1) {
		if got := h.next("second PTR answer"); !hasRR(got.m, peerFQDN, dns.TypePTR, -1) {
			t.Errorf("second answer:\n%v", got.m)
		}
	}
	h.none("one aggregated answer")
}

func TestQueryNowKeepsBackoff(t *testing.T) {
	a, b := &socket{iface: "a"}, &socket{iface: "b"}
	socks := []*socket{a, b}
	q := newQueries(time.Second, 30*time.Second, t0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	step := func(now time.Time, wantSend int, wantWake time.Time) {
		t.Helper()
		send, wake := q.due(now, socks, false)
		if len(send) != wantSend || !wake.Equal(wantWake) {
			t.Errorf("at %v: sent on %d sockets, wake at %v; want %d, %v",
				now.Sub(t0), len(send), wake.Sub(t0), wantSend, wantWake.Sub(t0))
		}
	}
	step(at(0), 2, at(time.Second))             // first query; next after QueryMin
	step(at(time.Second), 2, at(3*time.Second)) // back-off doubles: 2s
	// QueryNow 0.5s after a query waits for the second to be up.
	q.ask(socks)
	step(at(1500*time.Millisecond), 0, at(2*time.Second))
	step(at(2*time.Second), 2, at(3*time.Second))
	// Asking again and again within the second sends nothing more.
	for range 10 {
		q.ask(socks)
		step(at(2500*time.Millisecond), 0, at(3*time.Second))
	}
	// The periodic query covers the pending ask, and the back-off goes on
	// from 4s instead of starting over at QueryMin.
	step(at(3*time.Second), 2, at(7*time.Second))
	q.ask([]*socket{a})
	step(at(5*time.Second), 1, at(7*time.Second))
	step(at(7*time.Second), 2, at(15*time.Second))

	// A lone node whose mesh calls QueryNow every 5s: at most one query
	// per second per socket, and the periodic back-off still grows.
	q = newQueries(time.Second, 30*time.Second, t0)
	sent := 0
	for now := t0; now.Before(t0.Add(time.Minute)); now = now.Add(100 * time.Millisecond) {
		if now.Sub(t0)%(5*time.Second) == 0 {
			q.ask(socks)
		}
		send, _ := q.due(now, socks, false)
		sent += len(send)
	}
	// Periodic at 0,1,3,7,15,31 (6) plus at most one QueryNow per 5s (12),
	// on each of 2 sockets.
	if sent > 2*(6+12) {
		t.Errorf("%d queries in a minute, want at most %d", sent, 2*(6+12))
	}
}

// TestResponsesTheRFCIgnores: a response is read for peers only if it
// comes from port 5353 (RFC 6762 §6: "MUST silently ignore any Multicast
// DNS responses they receive where the source UDP port is not 5353") and
// has RCODE 0 (§18.11: "Multicast DNS messages received with non-zero
// Response Codes MUST be silently ignored").
func TestResponsesTheRFCIgnores(t *testing.T) {
	h := newHarness(t)
	refused := announceOf(t, peerB, peerBAddr)
	refused.Rcode = dns.RcodeRefused
	tests := []struct {
		name string
		msg  *dns.Msg
		src  netip.AddrPort
		want bool // peer b reported
	}{
		{"from 5353", announceOf(t, peerB, peerBAddr), onLinkSrc, true},
		{"from another port", announceOf(t, peerB, peerBAddr), netip.AddrPortFrom(onLinkSrc.Addr(), 40000), false},
		{"non-zero RCODE", refused, onLinkSrc, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.msg.Pack()
			if err != nil {
				t.Fatal(err)
			}
			for _, unicast := range []bool{false, true} {
				h.s.mu.Lock()
				h.s.disc.reset()
				in, err := h.s.receiveLocked(h.so, b, tt.src, unicast, t0)
				h.s.mu.Unlock()
				if err != nil {
					t.Fatal(err)
				}
				if got := len(in.peers) > 0; got != tt.want {
					t.Errorf("unicast %v: peers %+v; want peer b: %v", unicast, in.peers, tt.want)
				}
				if in.reply != nil {
					t.Errorf("unicast %v: replied to a response:\n%v", unicast, in.reply)
				}
			}
		})
	}
}

// TestOverlappingAnnouncementsRateLimited: RFC 6762 §6 — a record is
// multicast on an interface at most once a second. A service added half
// a second into the start-up announcements starts a second series of
// announcements (first and repeat) that overlaps the first; the repeats
// must not resend what went out half a second before, while every record
// still goes out at least twice (§8.3).
func TestOverlappingAnnouncementsRateLimited(t *testing.T) {
	h := newHarness(t, Service{Name: "redis", Port: 6379})
	h.started()
	clock := t0
	h.s.now = func() time.Time { return clock }
	jobs := []job{{sock: h.so, due: t0, left: announceCount}}
	sent := map[string][]time.Duration{} // recordKey: when multicast, since t0
	step := func(at time.Duration) {
		t.Helper()
		clock = t0.Add(at)
		jobs = h.s.runJobs(jobs, clock)
		for {
			select {
			case got := <-h.sent:
				for _, rr := range got.m.Answer {
					k := recordKey(rr)
					sent[k] = append(sent[k], at)
				}
				continue
			default:
			}
			break
		}
	}
	step(0)
	h.s.SetServices([]Service{{Name: "redis", Port: 6379}, {Name: "web", Port: 80}})
	if only := h.s.sendGoodbyes(); len(only) > 0 {
		jobs = append(jobs, job{only: only, due: t0.Add(500 * time.Millisecond), left: announceCount})
	}
	for _, at := range []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2 * time.Second} {
		step(at)
	}
	if len(jobs) != 0 {
		t.Errorf("%d jobs left", len(jobs))
	}
	if len(sent) == 0 {
		t.Fatal("nothing announced")
	}
	for k, at := range sent {
		for i := 1; i < len(at); i++ {
			if gap := at[i] - at[i-1]; gap < multicastGap {
				t.Errorf("%s multicast at %v: %v apart, want at least %v", k, at, gap, multicastGap)
			}
		}
		if len(at) < announceCount {
			t.Errorf("%s multicast at %v only, want at least %d times", k, at, announceCount)
		}
	}
}

// TestAnswerAfterWithdrawalLeavesServiceOut: a multicast answer is built
// when the query arrives but sent later (shared records wait 20-120ms,
// RFC 6762 §6). A service withdrawn meanwhile (SetServices: a failed
// health check) has had its goodbye; the answer must not announce it
// again, or every cache on the link would keep the dead service for its
// TTL.
func TestAnswerAfterWithdrawalLeavesServiceOut(t *testing.T) {
	redis, web := Service{Name: "redis", Port: 6379}, Service{Name: "web", Port: 80}
	tests := []struct {
		name string
		send func(s *Server, so *socket, reply *dns.Msg)
	}{
		{"immediate", (*Server).multicastAnswer},
		{"delayed", (*Server).deferAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, redis, web)
			h.started()
			q := query(0, "_redis._tcp.local.", dns.TypePTR, dns.ClassINET)
			q.Question = append(q.Question, dns.Question{Name: "_web._tcp.local.", Qtype: dns.TypePTR, Qclass: dns.ClassINET})
			h.s.mu.Lock()
			reply, dst := respond(h.so.zone, q, onLinkSrc, false)
			h.s.mu.Unlock()
			if reply == nil || dst != mdnsGroup || !hasRR(reply, "_redis._tcp.local.", dns.TypePTR, -1) {
				t.Fatalf("reply to %v:\n%v", dst, reply)
			}
			h.s.SetServices([]Service{web})
			tt.send(h.s, h.so, reply)
			got := h.next("answer")
			if !hasRR(got.m, "_web._tcp.local.", dns.TypePTR, -1) {
				t.Errorf("answer lacks the web PTR:\n%v", got.m)
			}
			for _, rr := range append(got.m.Answer, got.m.Extra...) {
				if strings.Contains(strings.ToLower(rr.String()), "_redis._tcp") {
					t.Errorf("answer after redis was withdrawn carries %v", rr)
				}
			}
		})
	}
}

// TestOwnRecordsUnderstatedReannounced: RFC 6762 §6.6 — when another
// responder sends one of our records (same name, type, class and data)
// with a TTL below half of ours, we MUST announce it again, or caches
// drop it early. The case that matters: a namesake (a duplicate --node,
// which the mesh stops) sends its goodbye on the way out, and with it
// the TTL-0 PTR, SRV and TXT records that are byte for byte ours; without
// a correction every browser on the link loses this node's services.
func TestOwnRecordsUnderstatedReannounced(t *testing.T) {
	id := identity{node: "Node A", cluster: "lab", host: "node-a.local.", gossipPort: 7946, ttl: 120}
	redis := Service{Name: "redis", Port: 6379}
	namesake, err := newZone(id, netip.MustParseAddr("192.0.2.77"), []Service{redis})
	if err != nil {
		t.Fatal(err)
	}
	withTTL := func(ttl uint32) *dns.Msg {
		m := announcement(namesake.records(nil, true))
		for _, rr := range m.Answer {
			rr.Header().Ttl = ttl
		}
		return m
	}
	tests := []struct {
		name string
		msg  *dns.Msg
		want bool // our redis records announced again
	}{
		{"namesake's goodbye", goodbye(namesake.records(nil, true)), true},
		{"TTL below half", withTTL(59), true},
		{"TTL half", withTTL(60), false},
		{"full TTL", withTTL(120), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, redis)
			h.receive(tt.msg, onLinkSrc, false)
			if !tt.want {
				h.none("announcement")
				return
			}
			got := h.next("announcement")
			if got.dst != mdnsGroup {
				t.Errorf("sent to %v, want %v", got.dst, mdnsGroup)
			}
			for _, r := range []rec{
				{"_redis._tcp.local.", dns.TypePTR},
				{`Node\ A._redis._tcp.local.`, dns.TypeSRV},
				{`Node\ A._redis._tcp.local.`, dns.TypeTXT},
				{peerFQDN, dns.TypePTR},
			} {
				if !hasRR(got.m, r.name, r.typ, 120) {
					t.Errorf("announcement lacks %s %s with TTL 120:\n%v", r.name, dns.TypeToString[r.typ], got.m)
				}
			}
			// The namesake's A record holds another address: not ours.
			if hasRR(got.m, "node-a.local.", dns.TypeA, -1) {
				t.Errorf("announcement carries the A record:\n%v", got.m)
			}
			h.none("one announcement")
		})
	}
}
