package announce

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeTimers stands in for Server.afterFunc: nothing runs until fire.
type fakeTimers struct {
	lose   bool // stop fails, as when the timer has fired already
	mu     sync.Mutex
	timers []*fakeTimer
}

type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
	fired   bool
}

func (ft *fakeTimers) afterFunc(d time.Duration, f func()) func() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{d: d, f: f}
	ft.timers = append(ft.timers, t)
	return func() bool {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		if t.stopped || t.fired || ft.lose {
			return false
		}
		t.stopped = true
		return true
	}
}

// pending returns the timers neither fired nor stopped.
func (ft *fakeTimers) pending() []*fakeTimer {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var out []*fakeTimer
	for _, t := range ft.timers {
		if !t.stopped && !t.fired {
			out = append(out, t)
		}
	}
	return out
}

// fire runs every pending timer's function, in this goroutine: whatever
// it sends is on the harness's channel when fire returns.
func (ft *fakeTimers) fire() {
	for _, t := range ft.pending() {
		ft.mu.Lock()
		t.fired = true
		ft.mu.Unlock()
		t.f()
	}
}

// inAnswer reports whether m's answer section has a record of type typ
// named name.
func inAnswer(m *dns.Msg, name string, typ uint16) bool {
	for _, rr := range m.Answer {
		if h := rr.Header(); h.Rrtype == typ && equalName(h.Name, name) {
			return true
		}
	}
	return false
}

// TestTruncatedQueryWaitsForKnownAnswers: a query with the TC bit is
// answered 400-500 ms later (RFC 6762 §6, §7.2), without the records
// listed as known answers in it or in the packets without questions that
// follow it from the same address and port (§18.5); packets from anyone
// else list what they know, not what this querier knows.
func TestTruncatedQueryWaitsForKnownAnswers(t *testing.T) {
	const (
		host  = "node-a.local."
		redis = "_redis._tcp.local."
	)
	svc := Service{Name: "redis", Port: 6379}
	ref := newHarness(t, svc)
	record := func(name string, qtype uint16) dns.RR {
		a, _ := ref.so.zone.answer(dns.Question{Name: name, Qtype: qtype, Qclass: dns.ClassINET})
		if len(a) == 0 {
			t.Fatalf("zone answers %s %s with %v", name, dns.TypeToString[qtype], a)
		}
		return a[0]
	}
	knownA, knownPTR := record(host, dns.TypeA), record(redis, dns.TypePTR)
	// pkt builds a query: the questions in qs (name, type; the QU bit
	// with qu), the known answers in known, TC with tc.
	type q struct {
		name  string
		qtype uint16
	}
	pkt := func(tc, qu bool, known []dns.RR, qs ...q) *dns.Msg {
		m := new(dns.Msg)
		m.Truncated = tc
		class := uint16(dns.ClassINET)
		if qu {
			class |= cacheFlush
		}
		for _, x := range qs {
			m.Question = append(m.Question, dns.Question{Name: x.name, Qtype: x.qtype, Qclass: class})
		}
		m.Answer = known
		return m
	}
	qA, qPTR := q{host, dns.TypeA}, q{redis, dns.TypePTR}
	other := netip.MustParseAddrPort("192.0.2.6:5353")
	otherPort := netip.AddrPortFrom(onLinkSrc.Addr(), 40000)
	type packet struct {
		m   *dns.Msg
		src netip.AddrPort
	}

	tests := []struct {
		name    string
		packets []packet
		at      bool       // answered at once, not after a delay
		dst     netip.Addr // where the answer goes; invalid: no answer
		want    []q        // in the answer section
		notWant []q        // not in the answer section
		unicast bool       // received on the socket for direct queries
	}{
		{
			name:    "continuation lists the only answer",
			packets: []packet{{pkt(true, false, nil, qA), onLinkSrc}, {pkt(false, false, []dns.RR{knownA}), onLinkSrc}},
		},
		{
			name:    "continuation lists one of two answers",
			packets: []packet{{pkt(true, false, nil, qA, qPTR), onLinkSrc}, {pkt(false, false, []dns.RR{knownPTR}), onLinkSrc}},
			dst:     mdnsGroup.Addr(), want: []q{qA}, notWant: []q{qPTR},
		},
		{
			name: "two continuations, the first with TC",
			packets: []packet{{pkt(true, false, nil, qA, qPTR), onLinkSrc},
				{pkt(true, false, []dns.RR{knownPTR}), onLinkSrc}, {pkt(false, false, []dns.RR{knownA}), onLinkSrc}},
		},
		{
			name:    "known answers of the TC packet itself count",
			packets: []packet{{pkt(true, false, []dns.RR{knownPTR}, qA, qPTR), onLinkSrc}},
			dst:     mdnsGroup.Addr(), want: []q{qA}, notWant: []q{qPTR},
		},
		{
			name:    "no continuation: answered after the delay",
			packets: []packet{{pkt(true, false, nil, qA, qPTR), onLinkSrc}},
			dst:     mdnsGroup.Addr(), want: []q{qA, qPTR},
		},
		{
			name:    "continuation from another address does not suppress",
			packets: []packet{{pkt(true, false, nil, qA), onLinkSrc}, {pkt(false, false, []dns.RR{knownA}), other}},
			dst:     mdnsGroup.Addr(), want: []q{qA},
		},
		{
			name:    "continuation from another port does not suppress",
			packets: []packet{{pkt(true, false, nil, qA), onLinkSrc}, {pkt(false, false, []dns.RR{knownA}), otherPort}},
			dst:     mdnsGroup.Addr(), want: []q{qA},
		},
		{
			name:    "QU question: unicast answer after the delay",
			packets: []packet{{pkt(true, true, nil, qA, qPTR), onLinkSrc}, {pkt(false, false, []dns.RR{knownPTR}), onLinkSrc}},
			dst:     onLinkSrc.Addr(), want: []q{qA}, notWant: []q{qPTR},
		},
		{
			name:    "direct unicast query: unicast answer after the delay",
			packets: []packet{{pkt(true, false, nil, qA, qPTR), onLinkSrc}, {pkt(false, false, []dns.RR{knownA}), onLinkSrc}},
			unicast: true, dst: onLinkSrc.Addr(), want: []q{qPTR}, notWant: []q{qA},
		},
		{
			name:    "second TC query from the same source joins the first",
			packets: []packet{{pkt(true, false, nil, qA), onLinkSrc}, {pkt(true, false, nil, qPTR), onLinkSrc}, {pkt(false, false, []dns.RR{knownA}), onLinkSrc}},
			dst:     mdnsGroup.Addr(), want: []q{qPTR}, notWant: []q{qA},
		},
		{
			name:    "query without TC: answered at once",
			packets: []packet{{pkt(false, false, nil, qA), onLinkSrc}},
			at:      true, dst: mdnsGroup.Addr(), want: []q{qA},
		},
		{
			name:    "legacy query with TC: answered at once",
			packets: []packet{{pkt(true, false, nil, qA), otherPort}},
			at:      true, dst: otherPort.Addr(), want: []q{qA},
		},
		{
			name:    "TC query for records not ours: nothing held",
			packets: []packet{{pkt(true, false, nil, q{"elsewhere.local.", dns.TypeA}), onLinkSrc}},
			at:      true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, svc)
			ft := &fakeTimers{}
			h.s.afterFunc = ft.afterFunc
			for _, p := range tt.packets {
				h.receive(p.m, p.src, tt.unicast && p.src == onLinkSrc)
			}
			if !tt.at {
				h.none("before the delay")
				timers := ft.pending()
				if len(timers) != 1 {
					t.Fatalf("%d timers pending, want 1", len(timers))
				}
				if d := timers[0].d; d < 400*time.Millisecond || d >= 500*time.Millisecond {
					t.Errorf("delay %v, want 400-500ms", d)
				}
				ft.fire()
			} else if n := len(ft.pending()); n != 0 {
				t.Errorf("%d timers pending, want none", n)
			}
			if !tt.dst.IsValid() {
				h.none("no answer")
				return
			}
			got := h.next("answer")
			if got.dst.Addr() != tt.dst {
				t.Errorf("answer to %v, want %v", got.dst, tt.dst)
			}
			if got.m.Truncated {
				t.Error("answer has the TC bit")
			}
			for _, x := range tt.want {
				if !inAnswer(got.m, x.name, x.qtype) {
					t.Errorf("answer lacks %s %s:\n%v", x.name, dns.TypeToString[x.qtype], got.m)
				}
			}
			for _, x := range tt.notWant {
				if inAnswer(got.m, x.name, x.qtype) {
					t.Errorf("answer repeats known %s %s:\n%v", x.name, dns.TypeToString[x.qtype], got.m)
				}
			}
			h.none("one answer")
		})
	}
}

// tcQuery is a query for this harness's A record with the TC bit set.
func tcQuery() *dns.Msg {
	m := query(0, "node-a.local.", dns.TypeA, dns.ClassINET)
	m.Truncated = true
	return m
}

// TestHeldQueriesBounded: at most maxTruncated TC queries are held per
// socket (one per source), and further sources are answered at once; a
// held query gathers at most maxHeldRecords questions and known answers.
func TestHeldQueriesBounded(t *testing.T) {
	h := newHarness(t)
	ft := &fakeTimers{}
	h.s.afterFunc = ft.afterFunc
	clock := t0
	h.s.now = func() time.Time { return clock }
	for i := range maxTruncated {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}), mdnsPort)
		h.receive(tcQuery(), src, false)
	}
	h.none("held queries")
	if n := len(ft.pending()); n != maxTruncated {
		t.Fatalf("%d queries held, want %d", n, maxTruncated)
	}
	h.receive(tcQuery(), onLinkSrc, false)
	if got := h.next("query beyond the bound"); got.dst != mdnsGroup {
		t.Errorf("answer to %v, want the group", got.dst)
	}
	if n := len(ft.pending()); n != maxTruncated {
		t.Errorf("%d queries held, want %d", n, maxTruncated)
	}

	// One source sends many continuations: what is kept is bounded.
	first := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 100}), mdnsPort)
	many := new(dns.Msg)
	for i := range 300 {
		many.Answer = append(many.Answer, &dns.PTR{
			Hdr: dns.RR_Header{Name: peerFQDN, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 120},
			Ptr: "n" + string(rune('a'+i%26)) + "." + peerFQDN,
		})
	}
	for range 10 {
		h.receive(many, first, false)
	}
	h.s.mu.Lock()
	held := h.so.held[first]
	n := len(held.query.Question) + len(held.query.Answer)
	h.s.mu.Unlock()
	if n != maxHeldRecords || len(held.query.Question) != 1 {
		t.Errorf("held query has %d questions, %d records in all; want 1, %d", len(held.query.Question), n, maxHeldRecords)
	}
	// Its answer still comes (the known answers are not ours), and the
	// one-second rule holds: the A record went out just now.
	ft.fire()
	h.none("A record multicast less than a second ago")
	clock = clock.Add(multicastGap)
	h.receive(tcQuery(), first, false)
	ft.fire()
	if got := h.next("answer a second later"); !inAnswer(got.m, "node-a.local.", dns.TypeA) {
		t.Errorf("answer:\n%v", got.m)
	}
}

// TestCloseDropsHeldQueries: Close does not wait out a held query's
// delay but stops its timer; if the timer fired already (Stop lost the
// race), Close waits for it, and it sends nothing.
func TestCloseDropsHeldQueries(t *testing.T) {
	for _, lose := range []bool{false, true} {
		t.Run(map[bool]string{false: "timer stopped", true: "timer fired already"}[lose], func(t *testing.T) {
			h := newHarness(t)
			ft := &fakeTimers{lose: lose}
			h.s.afterFunc = ft.afterFunc
			h.receive(tcQuery(), onLinkSrc, false)
			timers := ft.pending()
			if len(timers) != 1 {
				t.Fatalf("%d queries held, want 1", len(timers))
			}
			done := make(chan error, 1)
			go func() { done <- h.s.Close() }()
			if lose {
				select {
				case <-done:
					t.Fatal("Close returned before the fired timer's function")
				case <-time.After(50 * time.Millisecond):
				}
				ft.fire()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(waitFor):
				t.Fatal("Close waits for the held query")
			}
			if !lose && !timers[0].stopped {
				t.Error("held query's timer not stopped")
			}
			h.none("answer after Close")
		})
	}
}
