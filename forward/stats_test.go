package forward

import (
	"io"
	"testing"
)

// TestCountersSeam checks the counters other packages read: Retries and
// NoBackend per route, the open connections with live byte counts, and a
// Server's handoffs by status.
func TestCountersSeam(t *testing.T) {
	backend := startBackend(t, echo)
	s := newServer(t, testConfig(t), map[string]string{"svc": backend})
	dead := closedAddr(t)
	p, al := newProxy(t, testConfig(t))
	p.Update([]Route{
		{Service: "svc", Listen: "auto:svc", Balance: BalanceRoundRobin, Backends: []Backend{
			{Node: "dead", Addr: dead},
			{Node: "b", Addr: s.Addr().String(), Service: "svc"},
		}},
		{Service: "none", Listen: "auto:none", Backends: []Backend{{Node: "dead", Addr: closedAddr(t)}}},
	})

	// A connection that fails over from the dead backend, stays open, and
	// has moved bytes both ways.
	c := dial(t, al.addr(t, "auto:svc"))
	for range 2 { // round-robin: at least one of two conns starts on the dead backend
		if _, err := io.WriteString(c, "ping"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	c2 := dial(t, al.addr(t, "auto:svc"))
	if _, err := io.WriteString(c2, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c2, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two open connections with live byte counts", func() bool {
		cs := p.Connections()
		return len(cs) == 2 && cs[0].BytesIn == 8 && cs[0].BytesOut == 8 && cs[1].BytesIn == 1 && cs[1].BytesOut == 1
	})
	cs := p.Connections()[0]
	if cs.Service != "svc" || cs.Backend != s.Addr().String() || cs.Client != c.LocalAddr().String() || cs.Since.IsZero() {
		t.Errorf("Connections()[0] = %+v", cs)
	}

	// No backend at all.
	nc := dial(t, al.addr(t, "auto:none"))
	if b, _ := io.ReadAll(nc); len(b) != 0 {
		t.Errorf("read %q from a route with no backend", b)
	}

	var svc, none ListenerStatus
	waitFor(t, "NoBackend counted", func() bool {
		for _, st := range p.Status() {
			switch st.Service {
			case "svc":
				svc = st
			case "none":
				none = st
			}
		}
		return none.NoBackend == 1
	})
	if svc.Retries != 1 || svc.NoBackend != 0 || svc.DialErrors != 1 {
		t.Errorf("svc: Retries %d NoBackend %d DialErrors %d, want 1 0 1", svc.Retries, svc.NoBackend, svc.DialErrors)
	}
	if svc.BytesIn != 9 || svc.BytesOut != 9 {
		t.Errorf("svc: BytesIn %d BytesOut %d while open, want 9 9", svc.BytesIn, svc.BytesOut)
	}
	if none.Retries != 0 {
		t.Errorf("none: Retries %d, want 0", none.Retries)
	}

	// The Server: two ok handoffs, then one of each refusal.
	for _, send := range []string{"AMB\x01\x04nope", "GET /"} {
		rc := dial(t, s.Addr().String())
		_, _ = io.WriteString(rc, send)
		_, _ = io.ReadAll(rc)
	}
	// A byte is counted just after its write returns, so the echo can reach
	// the client a moment before the server's counter moves.
	waitFor(t, "the server's live byte counts", func() bool {
		st := s.Stats()
		return st.BytesIn == 9 && st.BytesOut == 9
	})
	st := s.Stats()
	if st.HandoffOK != 2 || st.HandoffUnknown != 1 || st.HandoffBadHeader != 1 || st.Accepted != 4 {
		t.Errorf("server stats %+v, want 2 ok, 1 unknown, 1 bad header, 4 accepted", st)
	}
	if st.BytesIn != 9 || st.BytesOut != 9 {
		t.Errorf("server bytes %d/%d while open, want 9/9", st.BytesIn, st.BytesOut)
	}
	if got := st.ByService["svc"]; got.BytesIn != 9 || got.BytesOut != 9 || len(st.ByService) != 1 {
		t.Errorf("server ByService %+v, want svc with 9/9 bytes", st.ByService)
	}
}
