package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lostSYNDial is a DialFunc seam: its first lost dials block until their
// ctx ends, as a connect whose SYN was dropped does; later dials go
// through, or are refused when refuse is set. It records when each dial
// started and when each lost one returned.
type lostSYNDial struct {
	lost   int
	refuse bool

	mu     sync.Mutex
	starts []time.Time // guarded by mu
	ended  int         // guarded by mu; lost dials that returned
}

func (f *lostSYNDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.starts = append(f.starts, time.Now())
	n := len(f.starts)
	f.mu.Unlock()
	switch {
	case n <= f.lost:
		<-ctx.Done()
		f.mu.Lock()
		f.ended++
		f.mu.Unlock()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	case f.refuse:
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// gaps returns how long after the first dial each later one started, and
// how many lost dials have returned.
func (f *lostSYNDial) gaps() ([]time.Duration, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, s := range f.starts[1:] {
		out = append(out, s.Sub(f.starts[0]))
	}
	return out, f.ended
}

// TestDialAttempt checks that a connect that gets no answer within
// DialAttempt gets a second attempt to the same backend next to it, then
// a third after twice the gap, within DialTimeout, each counted in
// Retries, so that a lost SYN does not cost the client's connection TCP's
// 1s retransmission timeout; that the attempts that lost the race end
// before the connection is used; and that a refused connect is not tried
// again.
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
	}{
		{"first attempt lost, second connects", attempt, 1, false, "ok", 2, 1, 0},
		{"two lost, third connects", attempt, 2, false, "ok", 3, 2, 0},
		{"no loss, one attempt", attempt, 0, false, "ok", 1, 0, 0},
		{"refused is not retried", attempt, 0, true, "", 1, 0, 1},
		{"DialAttempt 0: one attempt", 0, 0, false, "ok", 1, 0, 0},
		// The control: without a second attempt, the lost SYN costs the
		// connection (DialTimeout 2s runs out).
		{"DialAttempt 0: a lost first attempt fails", 0, 1, false, "", 1, 0, 1},
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
				// The attempts started attempt, 3*attempt, ... after the
				// first: far sooner than a 1s SYN retransmission.
				if d, limit := time.Since(start), time.Duration(1<<tc.lost-1)*attempt+time.Second; d > limit {
					t.Errorf("connected after %v, want within about %v", d, limit)
				}
			}
			gaps, ended := fd.gaps()
			if len(gaps)+1 != tc.dials {
				t.Fatalf("dials: got %d (started %v after the first), want %d", len(gaps)+1, gaps, tc.dials)
			}
			// Attempt i+1 starts (2^i - 1)*attempt after the first... at
			// the earliest; a busy machine only makes it later.
			for i, g := range gaps {
				if want := time.Duration(1<<(i+1)-1) * attempt; g < want {
					t.Errorf("attempt %d started %v after the first, want >= %v", i+2, g, want)
				}
			}
			if ended != tc.lost {
				t.Errorf("lost attempts that returned: got %d, want all %d before the connection is used", ended, tc.lost)
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
	gaps, _ := fd.gaps()
	n := len(gaps) + 1
	var st ListenerStatus
	waitFor(t, "the failure counted", func() bool {
		st = p.Status()[0]
		return st.NoBackend == 1
	})
	// Started at 0, 50, 150 and 350ms: at most four attempts in 400ms.
	if n < 2 || n > 4 || st.Retries != uint64(n-1) || st.DialErrors != 1 {
		t.Errorf("dials %d, Retries %d, DialErrors %d: want 2 to 4 dials, one retry per dial after the first, one dial error",
			n, st.Retries, st.DialErrors)
	}
}

// slowFirstDial is a DialFunc seam whose first dial connects only once a
// second has started, and whose second never connects: a first SYN that
// is answered late, after DialAttempt.
type slowFirstDial struct {
	second chan struct{} // closed when the second dial starts

	mu sync.Mutex
	n  int // guarded by mu; dials started
}

func (f *slowFirstDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if n == 1 {
		select {
		case <-f.second:
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	if n == 2 {
		close(f.second)
	}
	<-ctx.Done()
	return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
}

// TestDialAttemptLateFirstWins checks that a first attempt answered after
// DialAttempt is kept: the second attempt runs next to it, not instead of
// it, so a slow connect on a busy host is not thrown away.
func TestDialAttemptLateFirstWins(t *testing.T) {
	fd := &slowFirstDial{second: make(chan struct{})}
	cfg := testConfig(t)
	cfg.DialAttempt = 50 * time.Millisecond
	cfg.DialFunc = fd.dial
	p, al := newProxy(t, cfg)
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: startBackend(t, reply("ok"))}}}})
	if got := roundTrip(t, al.addr(t, "auto:svc"), ""); got != "ok" {
		t.Fatalf("got %q, want %q", got, "ok")
	}
	var st ListenerStatus
	waitFor(t, "the connection's counts", func() bool {
		st = p.Status()[0]
		return st.Active == 0
	})
	if st.Retries != 1 || st.DialErrors != 0 {
		t.Errorf("Retries, DialErrors: got %d, %d, want 1, 0", st.Retries, st.DialErrors)
	}
}

// TestHandoffOwnBudget checks that the handoff with a peer's data port
// has HandoffTimeout from the moment the connection is up, not what is
// left of DialTimeout: under 10 % loss a connect that needed resent SYNs
// left too little for a header or reply segment that was lost too, and
// the connection failed with "handoff to ...: i/o timeout" (issue 10).
// The fake data port reads the header and answers after replyAfter, past
// DialTimeout but within HandoffTimeout; a port that never answers fails
// the dial once HandoffTimeout has run out, not before and not much after.
func TestHandoffOwnBudget(t *testing.T) {
	const (
		dialTimeout    = 300 * time.Millisecond
		handoffTimeout = 1500 * time.Millisecond
	)
	for _, tc := range []struct {
		name       string
		replyAfter time.Duration // < 0 = never
		wantOK     bool
	}{
		{"reply after DialTimeout, within HandoffTimeout", 3 * dialTimeout, true},
		{"prompt reply", 0, true},
		{"no reply fails after HandoffTimeout", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startBackend(t, func(c *net.TCPConn) {
				if _, err := readHandoff(c); err != nil {
					return
				}
				if tc.replyAfter < 0 {
					_, _ = io.Copy(io.Discard, c) // silent until the client gives up
					return
				}
				// The reply's delay is what the test is about, not a
				// synchronization: a segment lost and resent.
				select {
				case <-time.After(tc.replyAfter):
				case <-t.Context().Done():
					return
				}
				_, _ = c.Write([]byte{byte(statusOK), 'o', 'k'})
				_ = c.CloseWrite()
			})
			cfg := testConfig(t)
			cfg.DialTimeout = dialTimeout
			cfg.HandoffTimeout = handoffTimeout
			if err := cfg.prepare(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c, err := dialBackend(t.Context(), &cfg, Backend{Addr: addr, Service: "svc"}, nil)
			took := time.Since(start)
			if !tc.wantOK {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded with a data port that never answers the handoff")
				}
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("err = %v, want a deadline exceeded", err)
				}
				if took < handoffTimeout || took > handoffTimeout+time.Second {
					t.Errorf("gave up after %v, want after HandoffTimeout %v", took, handoffTimeout)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial after %v: %v", took, err)
			}
			defer c.Close()
			if took < tc.replyAfter {
				t.Errorf("dial returned after %v, before the reply was sent (%v)", took, tc.replyAfter)
			}
			// What follows the reply is the service's, read with the
			// handoff's deadline cleared.
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "ok" {
				t.Errorf("after the handoff read %q, %v, want %q", b, err, "ok")
			}
		})
	}
}
