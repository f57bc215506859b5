package forward

import (
	"cmp"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

func TestValidBalance(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"", true},
		{BalanceLeastConn, true},
		{BalanceRoundRobin, true},
		{BalanceRandom, true},
		{BalanceFirst, true},
		{"Round-Robin", false},
		{"least_conn", false},
		{"bogus", false},
	} {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			err := ValidBalance(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidBalance(%q): got %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil {
				want := fmt.Sprintf("forward: balance policy %q is not one of least-conn, round-robin, random, first", tc.in)
				if err.Error() != want {
					t.Errorf("got %q, want %q", err, want)
				}
			}
		})
	}
}

func TestEjectBackoff(t *testing.T) {
	for _, tc := range []struct {
		fails int
		want  time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second},
		{5, 16 * time.Second}, {6, 30 * time.Second}, {7, 30 * time.Second}, {1000, 30 * time.Second},
	} {
		if got := ejectBackoff(tc.fails); got != tc.want {
			t.Errorf("ejectBackoff(%d): got %v, want %v", tc.fails, got, tc.want)
		}
	}
}

// conns returns BackendStats[i].Conns of the only listener.
func conns(p *Proxy) []uint64 {
	var out []uint64
	for _, bs := range p.Status()[0].BackendStats {
		out = append(out, bs.Conns)
	}
	return out
}

func TestBalanceDistribution(t *testing.T) {
	exact := func(want ...uint64) func(*testing.T, []uint64) {
		return func(t *testing.T, got []uint64) {
			if !slices.Equal(got, want) {
				t.Errorf("conns per backend: got %v, want %v", got, want)
			}
		}
	}
	within := func(lo, hi uint64) func(*testing.T, []uint64) {
		return func(t *testing.T, got []uint64) {
			for i, n := range got {
				if n < lo || n > hi {
					t.Errorf("conns per backend: got %v, want backend %d in [%d, %d]", got, i, lo, hi)
				}
			}
		}
	}
	for _, tc := range []struct {
		name       string
		balance    string
		weights    []int
		conns      int
		concurrent bool
		check      func(*testing.T, []uint64)
	}{
		{"round-robin", BalanceRoundRobin, []int{0, 0, 0}, 300, false, exact(100, 100, 100)},
		{"round-robin concurrent", BalanceRoundRobin, []int{1, 1, 1}, 300, true, exact(100, 100, 100)},
		{"round-robin weighted 3:1", BalanceRoundRobin, []int{3, 1}, 400, false, exact(300, 100)},
		{"random", BalanceRandom, []int{0, 0, 0}, 300, false, within(60, 140)},
		{"random concurrent", BalanceRandom, []int{0, 0, 0}, 300, true, within(60, 140)},
		{"random weighted 3:1", BalanceRandom, []int{3, 1}, 400, false, func(t *testing.T, got []uint64) {
			if got[0] < 260 || got[0] > 340 {
				t.Errorf("conns per backend: got %v, want about [300 100]", got)
			}
		}},
		{"first", BalanceFirst, []int{0, 5, 0}, 300, true, exact(300, 0, 0)},
		{"least-conn", BalanceLeastConn, []int{0, 0, 0}, 300, false, within(60, 140)},
		{"least-conn concurrent", "", []int{0, 0, 0}, 300, true, within(60, 140)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, al := newProxy(t, testConfig(t))
			useSeed(p, 42)
			var backends []Backend
			for i, w := range tc.weights {
				backends = append(backends, Backend{Node: fmt.Sprint(i), Addr: startBackend(t, reply(fmt.Sprint(i))), Weight: w})
			}
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: backends, Balance: tc.balance}})
			addr := al.addr(t, "auto:svc")
			workers := 1
			if tc.concurrent {
				workers = 10
			}
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for range tc.conns / workers {
						c, err := net.Dial("tcp", addr)
						if err != nil {
							t.Errorf("dial: %v", err)
							return
						}
						b, err := io.ReadAll(c)
						c.Close()
						if err != nil || len(b) != 1 {
							t.Errorf("read: got %q, %v", b, err)
							return
						}
						if !tc.concurrent {
							// The proxy ends its side of the stream after the
							// client has read the end; a stream still open
							// there would steer least-conn away from its
							// backend, and the rows test tie-breaking.
							if !waitNoActive(t, p) {
								return
							}
						}
					}
				})
			}
			wg.Wait()
			tc.check(t, conns(p))
			st := p.Status()[0]
			if want := cmp.Or(tc.balance, BalanceLeastConn); st.Balance != want {
				t.Errorf("Balance: got %q, want %q", st.Balance, want)
			}
			if st.DialErrors != 0 {
				t.Errorf("DialErrors: got %d, want 0", st.DialErrors)
			}
		})
	}
}

// waitNoActive waits until no backend of p's only listener has an open
// stream, for at most 5 s, and reports whether it got there (an error
// when not: it runs on the test's worker goroutines, where t.Fatal may not).
func waitNoActive(t *testing.T, p *Proxy) bool {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
		active := false
		for _, bs := range p.Status()[0].BackendStats {
			active = active || bs.Active > 0
		}
		if !active {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("backends still have open streams after 5 s: %+v", p.Status()[0].BackendStats)
			return false
		}
	}
}

// holdBackend writes name and then holds the conn open until the client
// closes it.
func holdBackend(name string) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		_, _ = io.WriteString(c, name)
		_, _ = io.Copy(io.Discard, c)
	}
}

// openHeld dials addr n times and returns the conns by the backend name
// each one read.
func openHeld(t *testing.T, addr string, n int) map[string][]net.Conn {
	t.Helper()
	out := make(map[string][]net.Conn)
	for range n {
		c := dial(t, addr)
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("read backend name: %v", err)
		}
		out[string(b)] = append(out[string(b)], c)
	}
	return out
}

func TestLeastConnHeld(t *testing.T) {
	t.Run("equal weights", func(t *testing.T) {
		p, al := newProxy(t, testConfig(t))
		var backends []Backend
		for _, name := range []string{"A", "B", "C"} {
			backends = append(backends, Backend{Node: name, Addr: startBackend(t, holdBackend(name))})
		}
		p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: backends}})
		addr := al.addr(t, "auto:svc")

		held := openHeld(t, addr, 6)
		for _, name := range []string{"A", "B", "C"} {
			if got := len(held[name]); got != 2 {
				t.Fatalf("held conns on %s: got %d, want 2 (all: %v)", name, got, held)
			}
		}
		for _, c := range held["B"] {
			c.Close()
		}
		waitFor(t, "B idle", func() bool { return p.Status()[0].BackendStats[1].Active == 0 })
		if st := p.Status()[0].BackendStats; st[0].Active != 2 || st[2].Active != 2 {
			t.Fatalf("Active: got A=%d C=%d, want 2 and 2", st[0].Active, st[2].Active)
		}
		more := openHeld(t, addr, 2)
		if got := len(more["B"]); got != 2 {
			t.Errorf("new conns on the least loaded B: got %d, want 2 (all: %v)", got, more)
		}
	})

	t.Run("weights 2:1", func(t *testing.T) {
		p, al := newProxy(t, testConfig(t))
		p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceLeastConn, Backends: []Backend{
			{Node: "A", Addr: startBackend(t, holdBackend("A")), Weight: 2},
			{Node: "B", Addr: startBackend(t, holdBackend("B"))},
		}}})
		held := openHeld(t, al.addr(t, "auto:svc"), 6)
		if len(held["A"]) != 4 || len(held["B"]) != 2 {
			t.Errorf("held conns: got A=%d B=%d, want 4 and 2", len(held["A"]), len(held["B"]))
		}
		st := p.Status()[0].BackendStats
		if st[0].Active != 4 || st[1].Active != 2 || st[0].Conns != 4 || st[1].Conns != 2 {
			t.Errorf("BackendStats: got %+v", st)
		}
	})
}

func TestFailoverEjects(t *testing.T) {
	good := startBackend(t, reply("good"))
	refusing := newServer(t, testConfig(t), map[string]string{"other": good}).Addr().String()
	blackholed := closedAddr(t)
	for _, tc := range []struct {
		name string
		bad  Backend
	}{
		{"refused", Backend{Addr: closedAddr(t)}},
		{"handoff refused", Backend{Addr: refusing, Service: "svc"}},
		{"dial times out", Backend{Addr: blackholed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := &faultDial{}
			fd.set(blackholed, faultBlackhole)
			cfg := testConfig(t)
			cfg.DialTimeout = 100 * time.Millisecond
			cfg.DialFunc = fd.dial
			p, al := newProxy(t, cfg)
			clk := useFakeClock(p)
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst,
				Backends: []Backend{tc.bad, {Addr: good}}}})
			addr := al.addr(t, "auto:svc")

			check := func(step string, dialErrs uint64, ejectedFor time.Duration) {
				t.Helper()
				if got := roundTrip(t, addr, ""); got != "good" {
					t.Fatalf("%s: got %q, want %q", step, got, "good")
				}
				st := p.Status()[0]
				if st.DialErrors != dialErrs {
					t.Errorf("%s: DialErrors: got %d, want %d", step, st.DialErrors, dialErrs)
				}
				bs := st.BackendStats[0]
				if !bs.Ejected || !bs.EjectedUntil.Equal(clk.now().Add(ejectedFor)) || bs.Failures != dialErrs {
					t.Errorf("%s: bad backend: got %+v, want ejected until now+%v with %d failures", step, bs, ejectedFor, dialErrs)
				}
				if g := st.BackendStats[1]; g.Ejected || g.Failures != 0 {
					t.Errorf("%s: good backend: got %+v, want not ejected", step, g)
				}
			}
			check("first conn", 1, time.Second)
			check("while ejected, not dialed", 1, time.Second)
			clk.advance(time.Second)
			check("after the back-off, dialed again", 2, 2*time.Second)
			clk.advance(time.Second)
			check("half-way through the doubled back-off", 2, time.Second)
		})
	}
}

func TestEjectionRecovers(t *testing.T) {
	fd := &faultDial{}
	cfg := testConfig(t)
	cfg.DialFunc = fd.dial
	p, al := newProxy(t, cfg)
	clk := useFakeClock(p)
	a, b := startBackend(t, reply("A")), startBackend(t, reply("B"))
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst, Backends: []Backend{{Addr: a}, {Addr: b}}}})
	addr := al.addr(t, "auto:svc")

	for _, step := range []struct {
		name    string
		fault   fault
		advance time.Duration
		want    string   // reply
		dialed  []string // in order
		ejected time.Duration
	}{
		{"A healthy", faultNone, 0, "A", []string{a}, 0},
		{"A down: fail over to B, eject A", faultRefuse, 0, "B", []string{a, b}, time.Second},
		{"A back, still ejected", faultNone, 0, "B", []string{b}, time.Second},
		{"back-off over: A again", faultNone, time.Second, "A", []string{a}, 0},
		{"A down again: back-off starts over", faultRefuse, 0, "B", []string{a, b}, time.Second},
	} {
		fd.set(a, step.fault)
		clk.advance(step.advance)
		if got := roundTrip(t, addr, ""); got != step.want {
			t.Fatalf("%s: got %q, want %q", step.name, got, step.want)
		}
		if got := fd.take(); !slices.Equal(got, step.dialed) {
			t.Errorf("%s: dialed: got %q, want %q", step.name, got, step.dialed)
		}
		bs := p.Status()[0].BackendStats[0]
		var want time.Time
		if step.ejected > 0 {
			want = clk.now().Add(step.ejected)
		}
		if bs.Ejected != (step.ejected > 0) || !bs.EjectedUntil.Equal(want) {
			t.Errorf("%s: A: got %+v, want ejected until %v", step.name, bs, want)
		}
	}
}

func TestAllFail(t *testing.T) {
	refusing := newServer(t, testConfig(t), map[string]string{"other": closedAddr(t)}).Addr().String()
	p, al := newProxy(t, testConfig(t))
	clk := useFakeClock(p)
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{
		{Addr: closedAddr(t)}, {Addr: refusing, Service: "svc"}, {Addr: closedAddr(t), Service: "svc"},
	}}})
	addr := al.addr(t, "auto:svc")

	for i, want := range []uint64{3, 6} {
		start := time.Now()
		c := dial(t, addr)
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("conn %d: got %q, %v, want a close with no data", i, b, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("conn %d: closed after %v, want at once", i, d)
		}
		// The second conn tries the ejected backends as a last resort,
		// without stretching their back-off.
		waitFor(t, "dial errors", func() bool { return p.Status()[0].DialErrors == want })
		for j, bs := range p.Status()[0].BackendStats {
			if !bs.Ejected || !bs.EjectedUntil.Equal(clk.now().Add(time.Second)) || bs.Failures != want/3 || bs.Active != 0 {
				t.Errorf("conn %d: backend %d: got %+v, want ejected for 1s", i, j, bs)
			}
		}
	}
}

func TestUpdateKeepsEjection(t *testing.T) {
	fd := &faultDial{}
	cfg := testConfig(t)
	cfg.DialFunc = fd.dial
	p, al := newProxy(t, cfg)
	clk := useFakeClock(p)
	a, b, c := startBackend(t, reply("A")), startBackend(t, reply("B")), startBackend(t, reply("C"))
	fd.set(a, faultRefuse)
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst, Backends: []Backend{{Node: "n1", Addr: a}, {Addr: b}}}})
	addr := al.addr(t, "auto:svc")
	if got := roundTrip(t, addr, ""); got != "B" {
		t.Fatalf("got %q, want %q", got, "B")
	}
	until := clk.now().Add(time.Second)

	find := func(addr string) BackendStatus {
		t.Helper()
		for _, bs := range p.Status()[0].BackendStats {
			if bs.Backend.Addr == addr {
				return bs
			}
		}
		t.Fatalf("no backend %s in Status", addr)
		return BackendStatus{}
	}

	// Reordered, A renamed and reweighted, C added, and A listed twice: A
	// keeps its state.
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{
		{Addr: b}, {Node: "n2", Addr: a, Weight: 2}, {Addr: c}, {Node: "dup", Addr: a},
	}}})
	st := p.Status()[0]
	if len(st.Backends) != 3 || len(st.BackendStats) != 3 || st.Balance != BalanceLeastConn {
		t.Fatalf("Status: got %+v, want 3 backends, least-conn", st)
	}
	got := find(a)
	want := BackendStatus{Backend: Backend{Node: "n2", Addr: a, Weight: 2}, Failures: 1, Ejected: true, EjectedUntil: until}
	if got != want {
		t.Errorf("A after Update: got %+v, want %+v", got, want)
	}
	if got := find(b); got.Conns != 1 {
		t.Errorf("B after Update: got %+v, want Conns 1", got)
	}
	fd.take()
	for range 10 { // least-conn never picks the ejected A while B and C are up
		if got := roundTrip(t, addr, ""); got != "B" && got != "C" {
			t.Fatalf("got %q, want B or C", got)
		}
	}
	if dialed := fd.take(); slices.Contains(dialed, a) {
		t.Errorf("dialed the ejected A: %q", dialed)
	}

	// Removed and added again: A starts fresh.
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: b}}}})
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: a}, {Addr: b}}}})
	if got := find(a); got != (BackendStatus{Backend: Backend{Addr: a}}) {
		t.Errorf("A re-added: got %+v, want fresh state", got)
	}
}

func TestUnknownBalance(t *testing.T) {
	cfg := testConfig(t)
	log, warns := newWarnCounter(t)
	cfg.Logger = log
	p, al := newProxy(t, cfg)
	for range 3 {
		p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: "bogus", Backends: []Backend{{Addr: startBackend(t, reply("ok"))}}}})
	}
	if got := warns("unknown balance policy, using least-conn"); got != 1 {
		t.Errorf("warnings: got %d, want 1", got)
	}
	if got := p.Status()[0].Balance; got != BalanceLeastConn {
		t.Errorf("Balance: got %q, want %q", got, BalanceLeastConn)
	}
	if got := roundTrip(t, al.addr(t, "auto:svc"), ""); got != "ok" {
		t.Errorf("got %q, want %q", got, "ok")
	}
}

func TestServerTargets(t *testing.T) {
	alive := startBackend(t, reply("hi"))
	dead := closedAddr(t)
	blackholed := closedAddr(t)
	far := startBackend(t, reply("far"))
	dead2, dead3 := closedAddr(t), closedAddr(t)
	fd := &faultDial{}
	fd.set(blackholed, faultBlackhole)
	fd.setDelay(far, 80*time.Millisecond) // more than an even share of DialTimeout (50ms among four)
	cfg := testConfig(t)
	cfg.DialTimeout = 200 * time.Millisecond // 100ms per target for two
	cfg.DialFunc = fd.dial
	s := newServerTargets(t, cfg, map[string][]string{
		"dead-first":  {dead, alive},
		"slow-first":  {blackholed, alive},
		"alive-first": {alive, dead},
		"all-dead":    {dead, blackholed},
		"none":        {},
		// Refused dials end at once and leave their share to the targets
		// after them: the far one gets the time that is left.
		"dead-then-far": {dead, dead2, dead3, far},
	})
	for _, tc := range []struct {
		service string
		want    handoffStatus
		reply   string
		dialed  []string
	}{
		{"dead-first", statusOK, "hi", []string{dead, alive}},
		{"slow-first", statusOK, "hi", []string{blackholed, alive}},
		{"alive-first", statusOK, "hi", []string{alive}},
		{"all-dead", statusUnavailable, "", []string{dead, blackholed}},
		{"none", statusUnavailable, "", nil},
		{"dead-then-far", statusOK, "far", []string{dead, dead2, dead3, far}},
	} {
		t.Run(tc.service, func(t *testing.T) {
			fd.take()
			c := dial(t, s.Addr().String())
			hdr, err := appendHandoff(nil, svcname.Name(tc.service))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if _, err := c.Write(hdr); err != nil {
				t.Fatal(err)
			}
			if st := readStatus(t, c); st != tc.want {
				t.Fatalf("status: got %v, want %v", st, tc.want)
			}
			if d := time.Since(start); d > cfg.DialTimeout+500*time.Millisecond {
				t.Errorf("status after %v, want within about DialTimeout %v", d, cfg.DialTimeout)
			}
			if b, err := io.ReadAll(c); err != nil || string(b) != tc.reply {
				t.Fatalf("after status: got %q, %v, want %q", b, err, tc.reply)
			}
			if got := fd.take(); !slices.Equal(got, tc.dialed) {
				t.Errorf("dialed: got %q, want %q", got, tc.dialed)
			}
		})
	}
}

// TestBalancePriority: Balance picks among the backends of the lowest
// Priority that are not ejected; the rest follow as failover in ascending
// Priority (RFC 2782's order), not ejected before ejected.
func TestBalancePriority(t *testing.T) {
	now := time.Unix(1000, 0)
	type be struct {
		addr    string
		prio    int
		ejected bool
		active  uint64
		weight  int
	}
	for _, tc := range []struct {
		name    string
		balance string
		bes     []be
		want    [][]string // the order of each successive plan
	}{
		{"one rank: route order", BalanceFirst,
			[]be{{addr: "a"}, {addr: "b"}, {addr: "c"}},
			[][]string{{"a", "b", "c"}}},
		{"lowest priority first, then ascending", BalanceFirst,
			[]be{{addr: "a", prio: 20}, {addr: "b", prio: 10}, {addr: "c", prio: 10}, {addr: "d", prio: 15}},
			[][]string{{"b", "c", "d", "a"}}},
		{"the lowest rank ejected: the next rank's", BalanceFirst,
			[]be{{addr: "a", prio: 10, ejected: true}, {addr: "b", prio: 20}, {addr: "c", prio: 30}},
			[][]string{{"b", "c", "a"}}},
		{"all ejected: the lowest rank's, then the others ascending", BalanceFirst,
			[]be{{addr: "a", prio: 30, ejected: true}, {addr: "b", prio: 10, ejected: true}, {addr: "c", prio: 20, ejected: true}},
			[][]string{{"b", "c", "a"}}},
		{"least-conn within the lowest rank, an idle higher rank untouched", BalanceLeastConn,
			[]be{{addr: "a", prio: 10, active: 3}, {addr: "b", prio: 10, active: 1}, {addr: "c", prio: 20}},
			[][]string{{"b", "a", "c"}, {"b", "a", "c"}, {"b", "a", "c"}, {"a", "b", "c"}}},
		{"round-robin by weight within the lowest rank", BalanceRoundRobin,
			[]be{{addr: "a", prio: 1, weight: 2}, {addr: "b", prio: 1}, {addr: "c", prio: 2, weight: 5}},
			[][]string{{"a", "b", "c"}, {"b", "a", "c"}, {"a", "b", "c"}}},
		{"random within the lowest rank", BalanceRandom,
			[]be{{addr: "c", prio: 2}, {addr: "a", prio: 1}, {addr: "b", prio: 1}},
			[][]string{{"a", "b", "c"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Route
			r.Balance = tc.balance
			for _, b := range tc.bes {
				r.Backends = append(r.Backends, Backend{Addr: b.addr, Priority: b.prio, Weight: b.weight})
			}
			rs := &routeState{}
			rs.setRoute(&r)
			for i, b := range tc.bes {
				rs.backends[i].active = b.active
				if b.ejected {
					rs.backends[i].until = now.Add(time.Second)
				}
			}
			for i, want := range tc.want {
				_, order := rs.plan(now, func(int) int { return 0 })
				var got []string
				for _, a := range order {
					got = append(got, a.b.Addr)
				}
				if !slices.Equal(got, want) {
					t.Errorf("plan %d: got %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

// TestLeastConnSmallWeight is the least-conn rule for a backend whose
// Weight is tiny beside the others': an SRV target of weight 0, which
// mesh passes as Weight 1 beside 100 per unit of SRV weight
// (upstream.Target.Share). RFC 2782 gives such a target "a very small
// chance" while others have weight; least-conn, which draws no lots, counts
// the connection it places, so that a backend is picked while it would
// carry the fewest connections per unit of Weight with this one included.
// The weight-0 target then gets nothing while the weighted ones are idle
// or lightly loaded (one connection at a time, or a few held), its first
// connection once every weighted one holds 99 or 100 per unit of SRV
// weight (at 99 the two tie), and
// all of them while the weighted ones are ejected. Weights that are equal,
// or close, keep sharing as before.
func TestLeastConnSmallWeight(t *testing.T) {
	now := time.Unix(1000, 0)
	type be struct {
		weight  int
		prio    int
		ejected bool
	}
	for _, tc := range []struct {
		name  string
		bes   []be
		conns int
		held  bool     // connections stay open; else each ends before the next
		want  []uint64 // connections per backend
	}{
		{"weight 0 beside weight 1, one at a time: none to it",
			[]be{{weight: 100}, {weight: 1}}, 1000, false, []uint64{1000, 0}},
		{"weight 0 listed first, one at a time: none to it",
			[]be{{weight: 1}, {weight: 100}}, 1000, false, []uint64{0, 1000}},
		{"weight 0 beside weight 1, 2 held: none to it",
			[]be{{weight: 100}, {weight: 1}}, 2, true, []uint64{2, 0}},
		{"weight 0 beside weight 1, 99 held: none to it",
			[]be{{weight: 100}, {weight: 1}}, 99, true, []uint64{99, 0}},
		{"weight 0 beside weight 1, 101 held: the 101st",
			[]be{{weight: 100}, {weight: 1}}, 101, true, []uint64{100, 1}},
		{"weight 0 beside weight 1, 202 held: one per 100",
			[]be{{weight: 100}, {weight: 1}}, 202, true, []uint64{200, 2}},
		{"weight 0 beside weights 1 and 2, 30 held: 1:2 and none to it",
			[]be{{weight: 100}, {weight: 200}, {weight: 1}}, 30, true, []uint64{10, 20, 0}},
		{"weight 0 beside an ejected weight 1: all to it",
			[]be{{weight: 100, ejected: true}, {weight: 1}}, 10, true, []uint64{0, 10}},
		{"weight 0 alone in the first priority: all to it",
			[]be{{weight: 1}, {weight: 100, prio: 1}}, 10, true, []uint64{10, 0}},
		{"only weight 0: shared",
			[]be{{weight: 1}, {weight: 1}}, 10, true, []uint64{5, 5}},
		{"equal weights held: shared",
			[]be{{}, {}, {}}, 9, true, []uint64{3, 3, 3}},
		{"weights 3:1 held: 3:1",
			[]be{{weight: 3}, {weight: 1}}, 8, true, []uint64{6, 2}},
		{"weights 3:1 one at a time: all to the heavier, never loaded",
			[]be{{weight: 3}, {weight: 1}}, 100, false, []uint64{100, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Route
			r.Balance = BalanceLeastConn
			for i, b := range tc.bes {
				r.Backends = append(r.Backends, Backend{Addr: fmt.Sprint(i), Weight: b.weight, Priority: b.prio})
			}
			rs := &routeState{}
			rs.setRoute(&r)
			for i, b := range tc.bes {
				if b.ejected {
					rs.backends[i].until = now.Add(time.Hour)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			got := make([]uint64, len(tc.bes))
			for range tc.conns {
				_, order := rs.plan(now, rng.IntN)
				for i, bs := range rs.backends {
					if bs == order[0].bs {
						got[i]++
					}
				}
				if !tc.held {
					rs.release(order[0].bs)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("connections per backend (weights %v): got %v, want %v", tc.bes, got, tc.want)
			}
		})
	}
}
