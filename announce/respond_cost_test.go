package announce

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/miekg/dns"
)

// TestRespondCostBounded: a query is network input from any host on the
// link, and respond runs with Server.mu held. One 9 KB query that repeats
// the enumeration question hundreds of times (6 bytes each, compressed)
// with as many known answers that match none of ours made respond compare
// every answer of every question with every known answer: 359 questions
// × 21 records × 359 known answers, about 0.2 s of CPU per packet
// (session 15 review). Its cost must stay that of one question.
func TestRespondCostBounded(t *testing.T) {
	var svcs []Service
	for i := range 20 {
		svcs = append(svcs, Service{Name: svcname.Must(fmt.Sprintf("svc%d", i)), Port: 1000 + i})
	}
	z := testZone(t, testID, svcs...)
	hostile := new(dns.Msg)
	hostile.Compress = true
	for i := 0; hostile.Len() < maxPacket-100; i++ {
		hostile.Question = append(hostile.Question, dns.Question{Name: enumFQDN, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
		hostile.Answer = append(hostile.Answer, &dns.PTR{
			Hdr: dns.RR_Header{Name: enumFQDN, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 120},
			Ptr: fmt.Sprintf("_x%d._tcp.local.", i),
		})
	}
	hostile = unpacked(t, hostile)
	one := hostile.Copy()
	one.Question = one.Question[:1]
	src := netip.MustParseAddrPort("192.0.2.5:5353")

	cost := func(q *dns.Msg) time.Duration {
		best := time.Duration(1<<63 - 1)
		for range 5 {
			start := time.Now()
			reply, _ := respond(z, q, src, false)
			best = min(best, time.Since(start))
			if reply == nil || len(reply.Answer) != len(svcs)+1 {
				t.Fatalf("got reply %v, want %d enumeration PTRs", reply, len(svcs)+1)
			}
		}
		return best
	}
	base, got := cost(one), cost(hostile)
	t.Logf("%d questions, %d known answers: %v; one question: %v", len(hostile.Question), len(hostile.Answer), got, base)
	if got > 20*base+time.Millisecond {
		t.Errorf("respond to %d identical questions took %v, %.0f times one question's %v; want at most 20 times",
			len(hostile.Question), got, float64(got)/float64(base), base)
	}
}

// unpacked returns m as a receiver sees it: packed and unpacked again.
func unpacked(t *testing.T, m *dns.Msg) *dns.Msg {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxPacket {
		t.Fatalf("query of %d bytes exceeds %d", len(b), maxPacket)
	}
	var out dns.Msg
	if err := out.Unpack(b); err != nil {
		t.Fatal(err)
	}
	return &out
}
