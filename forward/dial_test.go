package forward

import (
	"context"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lostSYNDial is a DialFunc seam: its first lost dials block until their
// ctx ends, as a connect whose SYN was dropped does; later dials go
// through, or are refused when refuse is set. It records each dial's time
// budget.
type lostSYNDial struct {
	lost   int
	refuse bool

	mu      sync.Mutex
	budgets []time.Duration // guarded by mu; per dial, the time its ctx allowed
}

func (f *lostSYNDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dl, _ := ctx.Deadline()
	f.mu.Lock()
	f.budgets = append(f.budgets, time.Until(dl))
	n := len(f.budgets)
	f.mu.Unlock()
	switch {
	case n <= f.lost:
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	case f.refuse:
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (f *lostSYNDial) dials() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.budgets...)
}

// TestDialAttempt checks that a connect that gets no answer within
// DialAttempt is tried again at once on the same backend, within
// DialTimeout, and counted in Retries, so that a lost SYN does not cost
// the client's connection TCP's 1s retransmission timeout; and that a
// refused connect is not tried again.
func TestDialAttempt(t *testing.T) {
	const attempt = 50 * time.Millisecond
	for _, tc := range []struct {
		name        string
		dialAttempt time.Duration
		lost        int
		refuse      bool
		want        string // "" = the client's conn is closed with no data
		dials       int
		retries     uint64
		dialErrors  uint64
		firstBudget time.Duration // upper bound of the first dial's budget
	}{
		{"first attempt lost, second connects", attempt, 1, false, "ok", 2, 1, 0, attempt},
		{"two lost, third connects", attempt, 2, false, "ok", 3, 2, 0, attempt},
		{"no loss, one attempt", attempt, 0, false, "ok", 1, 0, 0, attempt},
		{"refused is not retried", attempt, 0, true, "", 1, 0, 1, attempt},
		{"DialAttempt 0: one attempt for all of DialTimeout", 0, 0, false, "ok", 1, 0, 0, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := &lostSYNDial{lost: tc.lost, refuse: tc.refuse}
			cfg := testConfig(t) // DialTimeout 2s
			cfg.DialAttempt = tc.dialAttempt
			cfg.DialFunc = fd.dial
			p, al := newProxy(t, cfg)
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: startBackend(t, reply("ok"))}}}})
			start := time.Now()
			if got := roundTrip(t, al.addr(t, "auto:svc"), ""); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if tc.want != "" && tc.lost > 0 {
				// The lost attempts took attempt, 2*attempt, ...: far less
				// than a 1s SYN retransmission.
				if d, limit := time.Since(start), time.Duration(1<<tc.lost-1)*attempt+time.Second; d > limit {
					t.Errorf("connected after %v, want within about %v", d, limit)
				}
			}
			budgets := fd.dials()
			if len(budgets) != tc.dials {
				t.Fatalf("dials: got %d (budgets %v), want %d", len(budgets), budgets, tc.dials)
			}
			if budgets[0] > tc.firstBudget || budgets[0] < tc.firstBudget/2 {
				t.Errorf("first dial's budget: got %v, want about %v", budgets[0], tc.firstBudget)
			}
			for i := 1; i < len(budgets) && i < tc.lost; i++ {
				if budgets[i] > 2*budgets[i-1]+10*time.Millisecond || budgets[i] < budgets[i-1] {
					t.Errorf("dial %d's budget %v after %v: want twice the last", i, budgets[i], budgets[i-1])
				}
			}
			var st ListenerStatus
			waitFor(t, "the connection's counts", func() bool {
				st = p.Status()[0]
				return st.Active == 0
			})
			if st.Retries != tc.retries || st.DialErrors != tc.dialErrors || st.HandoffRefused != 0 {
				t.Errorf("Retries, DialErrors, HandoffRefused: got %d, %d, %d, want %d, %d, 0",
					st.Retries, st.DialErrors, st.HandoffRefused, tc.retries, tc.dialErrors)
			}
		})
	}
}

// TestDialAttemptNotPastDialTimeout checks that attempts that all go
// unanswered end within DialTimeout: the retries do not extend it.
func TestDialAttemptNotPastDialTimeout(t *testing.T) {
	fd := &lostSYNDial{lost: 1 << 30}
	cfg := testConfig(t)
	cfg.DialTimeout = 400 * time.Millisecond
	cfg.DialAttempt = 50 * time.Millisecond
	cfg.DialFunc = fd.dial
	p, al := newProxy(t, cfg)
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: closedAddr(t)}}}})
	start := time.Now()
	if got := roundTrip(t, al.addr(t, "auto:svc"), ""); got != "" {
		t.Fatalf("got %q from a backend that never answers", got)
	}
	if d := time.Since(start); d < cfg.DialTimeout || d > cfg.DialTimeout+time.Second {
		t.Errorf("gave up after %v, want after DialTimeout %v", d, cfg.DialTimeout)
	}
	n := len(fd.dials())
	var st ListenerStatus
	waitFor(t, "the failure counted", func() bool {
		st = p.Status()[0]
		return st.NoBackend == 1
	})
	// 50, 100, 200ms, then the rest: at most four attempts in 400ms.
	if n < 2 || n > 4 || st.Retries != uint64(n-1) || st.DialErrors != 1 {
		t.Errorf("dials %d, Retries %d, DialErrors %d: want 2 to 4 dials, one retry per dial after the first, one dial error",
			n, st.Retries, st.DialErrors)
	}
}
