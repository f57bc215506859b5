package announce

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestKnownAnswerSuppression: a peer whose PTR we hold with more than half
// its TTL left goes into our query, and that query gets no answer from
// it; past half the TTL, or after forget (QueryNow), it is asked again.
func TestKnownAnswerSuppression(t *testing.T) {
	d := newTestDiscovery()
	d.parse(announceOf(t, peerB, peerBAddr), peerSrc, "eth0", t0)
	known := d.known(t0.Add(time.Second))
	if len(known) != 1 || known[0].(*dns.PTR).Ptr != "b._ambassador._tcp.local." {
		t.Fatalf("known answers %v, want b's PTR", known)
	}
	z := testZone(t, peerB)
	if reply, _ := respond(z, peerQuery(false, known), querier, false); reply != nil {
		t.Errorf("answered a query that lists our PTR as known:\n%v", reply)
	}
	if got := d.known(t0.Add(61 * time.Second)); len(got) != 0 {
		t.Errorf("known answers past half the TTL: %v", got)
	}
	if reply, _ := respond(z, peerQuery(false, d.known(t0.Add(61*time.Second))), querier, false); reply == nil {
		t.Error("no answer once the known answer is stale")
	}
	d.forget()
	if got := d.known(t0.Add(time.Second)); len(got) != 0 {
		t.Errorf("known answers after forget: %v", got)
	}
	// A goodbye drops the PTR.
	d.parse(announceOf(t, peerB, peerBAddr), peerSrc, "eth0", t0)
	d.parse(goodbye(announceOf(t, peerB, peerBAddr).Answer), peerSrc, "eth0", t0)
	if got := d.known(t0); len(got) != 0 {
		t.Errorf("known answers after a goodbye: %v", got)
	}
}

func TestKnownAnswersBounded(t *testing.T) {
	d := newTestDiscovery()
	long := strings.Repeat("x", 60) // node names up to 63 bytes
	for i := range 2 * maxKnownAnswers {
		d.notePTR(fmt.Sprintf("%s%02d._ambassador._tcp.local.", long, i), 120, t0)
	}
	known := d.known(t0)
	if len(known) != maxKnownAnswers {
		t.Fatalf("%d known answers, want %d", len(known), maxKnownAnswers)
	}
	m := peerQuery(true, known)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if m.Truncated {
		t.Error("query has the TC bit, but no known answers follow it (RFC 6762 §18.5)")
	}
	if len(b) > maxQuerySize || len(m.Answer) == 0 {
		t.Errorf("query with %d known answers of long names is %d bytes, want 1..%d answers in <= %d", len(m.Answer), len(b), len(known), maxQuerySize)
	}
}

// TestQueryUnicastWhenPossible: the peer query asks for unicast replies
// (QU) where the socket for them is open, multicast (QM) otherwise, and
// lists the peers already known.
func TestQueryUnicastWhenPossible(t *testing.T) {
	h := newHarness(t)
	h.s.query(h.so)
	if q := h.next("query without a unicast socket").m.Question[0]; q.Qclass != dns.ClassINET {
		t.Errorf("question class %#x, want QM %#x", q.Qclass, dns.ClassINET)
	}
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h.s.mu.Lock()
	h.so.ucast = u
	h.s.disc.parse(announceOf(t, peerB, peerBAddr), onLinkSrc, "eth0", time.Now())
	h.s.mu.Unlock()
	h.s.query(h.so)
	got := h.next("query with a unicast socket").m
	if q := got.Question[0]; q.Qclass != dns.ClassINET|cacheFlush {
		t.Errorf("question class %#x, want QU %#x", q.Qclass, dns.ClassINET|cacheFlush)
	}
	if len(got.Answer) != 1 {
		t.Errorf("known answers %v, want b's PTR", got.Answer)
	}
	// On loopback every node shares the address, and a unicast reply would
	// reach only one of them: the question stays QM there.
	h.so.loopback = true
	h.s.query(h.so)
	if q := h.next("query on loopback").m.Question[0]; q.Qclass != dns.ClassINET {
		t.Errorf("loopback: question class %#x, want QM %#x", q.Qclass, dns.ClassINET)
	}
	h.so.loopback = false
	// QU is answered by unicast, at once, even right after a multicast
	// of the same records.
	p := newHarness(t, Service{Name: "redis", Port: 6379})
	p.s.sendRecords(p.so, p.so.zone.records(nil, true), sendAnnounce)
	p.next("announcement")
	p.receive(peerQuery(true, nil), onLinkSrc, false)
	if a := p.next("answer to QU"); a.dst != onLinkSrc {
		t.Errorf("QU answer sent to %v, want %v", a.dst, onLinkSrc)
	}
}

func TestQueryQuiet(t *testing.T) {
	a := &socket{iface: "a"}
	socks := []*socket{a}
	q := newQueries(time.Second, 30*time.Second, t0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	step := func(now time.Time, wantSend int, wantWake time.Time) {
		t.Helper()
		send, wake := q.due(now, socks, true)
		if len(send) != wantSend || !wake.Equal(wantWake) {
			t.Errorf("at %v: sent %d, wake at %v; want %d, %v", now.Sub(t0), len(send), wake.Sub(t0), wantSend, wantWake.Sub(t0))
		}
	}
	step(at(0), 1, at(30*time.Second))
	q.setQuiet(true, at(time.Second))
	step(at(30*time.Second), 0, at(301*time.Second))
	step(at(301*time.Second), 1, at(601*time.Second))
	// QueryNow still goes out while quiet.
	q.ask(socks)
	step(at(400*time.Second), 1, at(601*time.Second))
	// Alone again: a query at once, then the back-off from QueryMin.
	q.setQuiet(false, at(500*time.Second))
	if send, wake := q.due(at(500*time.Second), socks, false); len(send) != 1 || !wake.Equal(at(501*time.Second)) {
		t.Errorf("leaving quiet: sent %d, wake at %v; want 1, 501s", len(send), wake.Sub(t0))
	}
}
