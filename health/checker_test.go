package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Interval = 10 * time.Millisecond
	cfg.Timeout = 10 * time.Millisecond
	cfg.Logger, _ = testLogger(t, slog.LevelDebug)
	return cfg
}

var errDown = errors.New("down")

// fakeProber answers checks from a per-address script: the i-th check since
// the last set returns script[i], and the last entry repeats. An address
// with no script passes. It counts checks per address.
type fakeProber struct {
	mu      sync.Mutex
	scripts map[string][]error // guarded by mu
	pos     map[string]int     // guarded by mu
	calls   map[string]int     // guarded by mu
}

func newFakeProber() *fakeProber {
	return &fakeProber{scripts: map[string][]error{}, pos: map[string]int{}, calls: map[string]int{}}
}

func (f *fakeProber) set(addr string, script ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scripts[addr], f.pos[addr] = script, 0
}

func (f *fakeProber) count(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[addr]
}

func (f *fakeProber) probe(ctx context.Context, addr string, c Check) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[addr]++
	s := f.scripts[addr]
	if len(s) == 0 {
		return nil
	}
	i := min(f.pos[addr], len(s)-1)
	f.pos[addr]++
	return s[i]
}

type event struct {
	name    string
	healthy bool
	err     error
	calls   int // checks of the name's address when onChange ran
}

func (e event) String() string {
	return fmt.Sprintf("{%s healthy=%v err=%v calls=%d}", e.name, e.healthy, e.err, e.calls)
}

// recorder records onChange calls and fails the test if calls for one name
// overlap. Tests use Name == Addr so it can read the fake's call count.
type recorder struct {
	t  *testing.T
	fp *fakeProber

	mu       sync.Mutex
	events   []event        // guarded by mu
	inFlight map[string]int // guarded by mu
}

func newRecorder(t *testing.T, fp *fakeProber) *recorder {
	return &recorder{t: t, fp: fp, inFlight: map[string]int{}}
}

func (r *recorder) onChange(n svcname.Name, healthy bool, err error) {
	name := n.String()
	r.mu.Lock()
	r.inFlight[name]++
	if r.inFlight[name] > 1 {
		r.t.Errorf("overlapping onChange calls for %q", name)
	}
	r.mu.Unlock()
	ev := event{name: name, healthy: healthy, err: err}
	if r.fp != nil {
		ev.calls = r.fp.count(name)
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.inFlight[name]--
	r.mu.Unlock()
}

// of returns the events for name.
func (r *recorder) of(name string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

// newChecker returns a started Checker that is closed at cleanup.
// fakeSetup is the usual start of a Checker test: a fake prober that
// passes until told otherwise, a recorder of state changes, and the test
// config probing through the fake.
func fakeSetup(t *testing.T) (Config, *fakeProber, *recorder) {
	fp := newFakeProber()
	cfg := testConfig(t)
	cfg.ProbeFunc = fp.probe
	return cfg, fp, newRecorder(t, fp)
}

func newChecker(t *testing.T, cfg Config, onChange func(svcname.Name, bool, error), targets ...Target) *Checker {
	t.Helper()
	c, err := New(cfg, onChange)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	c.Set(targets)
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c
}

func tcpTarget(addr string) Target {
	// health keys targets by name and never checks it: the address is a
	// unique key (a conversion, allowed in tests).
	return Target{Name: svcname.Name(addr), Addr: addr, Check: Check{Kind: KindTCP}}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"default", func(*Config) {}, ""},
		{"timeout equals interval", func(c *Config) { c.Timeout = c.Interval }, ""},
		{"rise and fall 3", func(c *Config) { c.Rise, c.Fall = 3, 3 }, ""},
		{"zero interval", func(c *Config) { c.Interval = 0 }, "health: config: Interval 0s must be > 0"},
		{"negative interval", func(c *Config) { c.Interval = -time.Second }, "health: config: Interval -1s must be > 0"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "health: config: Timeout 0s must be > 0"},
		{"timeout over interval", func(c *Config) { c.Timeout = 3 * time.Second }, "health: config: Timeout 3s must be <= Interval 2s"},
		{"zero rise", func(c *Config) { c.Rise = 0 }, "health: config: Rise 0 must be >= 1"},
		{"zero fall", func(c *Config) { c.Fall = 0 }, "health: config: Fall 0 must be >= 1"},
		{"zero config", func(c *Config) { *c = Config{} }, "health: config: Interval 0s must be > 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mod(&cfg)
			c, err := New(cfg, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if err := c.Close(); err != nil {
					t.Errorf("Close of an unstarted Checker: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	got := DefaultConfig()
	want := Config{Interval: 2 * time.Second, Timeout: time.Second, Rise: 1, Fall: 1}
	if got.Interval != want.Interval || got.Timeout != want.Timeout || got.Rise != want.Rise ||
		got.Fall != want.Fall || got.Logger != nil || got.ProbeFunc != nil {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestCheckerFirstResult(t *testing.T) {
	checkGoroutines(t)
	cfg, fp, rec := fakeSetup(t)
	fp.set("down:1", errDown)
	cfg.Rise, cfg.Fall = 3, 3 // the first result is reported whatever Rise and Fall say
	c := newChecker(t, cfg, rec.onChange, tcpTarget("up:1"), tcpTarget("down:1"))

	waitFor(t, "both first results", func() bool { return len(rec.of("up:1")) > 0 && len(rec.of("down:1")) > 0 })
	waitFor(t, "more checks", func() bool { return fp.count("up:1") > 5 && fp.count("down:1") > 5 })
	if got, want := fmt.Sprint(rec.of("up:1")), fmt.Sprint([]event{{name: "up:1", healthy: true, calls: 1}}); got != want {
		t.Errorf("up:1 events: got %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(rec.of("down:1")), fmt.Sprint([]event{{name: "down:1", healthy: false, err: errDown, calls: 1}}); got != want {
		t.Errorf("down:1 events: got %s, want %s", got, want)
	}

	st := c.Status()
	if len(st) != 2 || st[0].Name != "down:1" || st[1].Name != "up:1" {
		t.Fatalf("Status: got %+v, want down:1 then up:1", st)
	}
	down, up := st[0], st[1]
	if !down.Known || down.Healthy || down.LastErr != "down" || down.Passes != 0 || down.Failures < 5 ||
		down.Addr != "down:1" || down.Check != "tcp" || down.LastCheck.IsZero() {
		t.Errorf("Status down:1: got %+v", down)
	}
	if !up.Known || !up.Healthy || up.LastErr != "" || up.Passes < 5 || up.Failures != 0 || up.LastCheck.IsZero() {
		t.Errorf("Status up:1: got %+v", up)
	}
}

func TestCheckerRiseFall(t *testing.T) {
	P, F := error(nil), errDown
	type ev struct {
		healthy bool
		calls   int
	}
	tests := []struct {
		name       string
		rise, fall int
		script     []error
		want       []ev
	}{
		{"1/1 follows every result", 1, 1, []error{P, F, P, P, F, F, P},
			[]ev{{true, 1}, {false, 2}, {true, 3}, {false, 5}, {true, 7}}},
		{"fall 2 ignores single failures", 1, 2, []error{P, F, P, F, F, F, P},
			[]ev{{true, 1}, {false, 5}, {true, 7}}},
		{"rise 3 needs three passes in a row", 3, 1, []error{F, P, P, F, P, P, P, F},
			[]ev{{false, 1}, {true, 7}, {false, 8}}},
		{"rise 3 fall 2", 3, 2, []error{P, F, P, F, F, P, P, F, P, P, P},
			[]ev{{true, 1}, {false, 5}, {true, 11}}},
		{"first result unhealthy, fall irrelevant", 1, 5, []error{F, P},
			[]ev{{false, 1}, {true, 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			cfg, fp, rec := fakeSetup(t)
			fp.set("s:1", tc.script...)
			cfg.Rise, cfg.Fall = tc.rise, tc.fall
			newChecker(t, cfg, rec.onChange, tcpTarget("s:1"))
			// The last result repeats, so nothing flips after the script.
			waitFor(t, "the script to run", func() bool { return fp.count("s:1") >= len(tc.script)+5 })
			var want []event
			for _, e := range tc.want {
				ee := event{name: "s:1", healthy: e.healthy, calls: e.calls}
				if !e.healthy {
					ee.err = errDown
				}
				want = append(want, ee)
			}
			if got := rec.of("s:1"); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

func TestCheckerFlipsAndLogs(t *testing.T) {
	checkGoroutines(t)
	cfg, fp, rec := fakeSetup(t)
	logger, logs := testLogger(t, slog.LevelInfo)
	cfg.Logger = logger
	newChecker(t, cfg, rec.onChange, Target{Name: "web", Addr: "web", Check: Check{Kind: KindHTTP, Path: "/h"}})

	settle := func(n int) { // let n more checks run
		t.Helper()
		from := fp.count("web")
		waitFor(t, "more checks", func() bool { return fp.count("web") >= from+n })
	}
	waitFor(t, "first result", func() bool { return len(rec.of("web")) == 1 })
	settle(5)
	fp.set("web", errDown)
	waitFor(t, "unhealthy", func() bool { return len(rec.of("web")) == 2 })
	settle(5)
	fp.set("web", nil)
	waitFor(t, "healthy again", func() bool { return len(rec.of("web")) == 3 })
	settle(5)

	evs := rec.of("web")
	if len(evs) != 3 || !evs[0].healthy || evs[1].healthy || evs[1].err != errDown || !evs[2].healthy || evs[2].err != nil {
		t.Errorf("events: got %s, want healthy, unhealthy (down), healthy", evs)
	}
	if got := logs.lines("component=health", `msg="service healthy"`, "service=web", "backend=web", "check=http:/h"); len(got) != 2 {
		t.Errorf("service healthy lines: got %q, want 2", got)
	}
	if got := logs.lines("component=health", `msg="service unhealthy"`, "service=web", "backend=web", "err=down"); len(got) != 1 {
		t.Errorf("service unhealthy lines: got %q, want 1", got)
	}
	// One start line plus the three flips: nothing per passing check.
	if got := logs.lines(""); len(got) != 4 {
		t.Errorf("log lines: got %d, want 4:\n%q", len(got), got)
	}
}

func TestCheckerSet(t *testing.T) {
	checkGoroutines(t)
	cfg, fp, rec := fakeSetup(t)
	fp.set("b:2", errDown)
	c := newChecker(t, cfg, rec.onChange, tcpTarget("a:1"), tcpTarget("b:1"))
	waitFor(t, "first results", func() bool { return len(rec.of("a:1")) == 1 && len(rec.of("b:1")) == 1 })

	t.Run("add", func(t *testing.T) {
		c.Set([]Target{tcpTarget("a:1"), tcpTarget("b:1"), tcpTarget("c:1")})
		waitFor(t, "c:1 result", func() bool { return len(rec.of("c:1")) == 1 })
	})

	t.Run("remove stops probing", func(t *testing.T) {
		c.Set([]Target{tcpTarget("a:1"), tcpTarget("c:1")})
		n := fp.count("b:1")
		from := fp.count("a:1")
		waitFor(t, "a:1 checks", func() bool { return fp.count("a:1") >= from+10 })
		// A check that had begun when Set ran may still finish.
		if got := fp.count("b:1"); got > n+1 {
			t.Errorf("b:1 checks after removal: got %d, want <= %d", got, n+1)
		}
		if got := names(c.Status()); got != "[a:1 c:1]" {
			t.Errorf("Status names: got %s, want [a:1 c:1]", got)
		}
	})

	t.Run("unchanged target keeps its state", func(t *testing.T) {
		before := c.Status()[0]
		c.Set([]Target{tcpTarget("a:1"), tcpTarget("c:1")})
		from := fp.count("a:1")
		waitFor(t, "a:1 checks", func() bool { return fp.count("a:1") >= from+3 })
		after := c.Status()[0]
		if after.Passes <= before.Passes || len(rec.of("a:1")) != 1 {
			t.Errorf("a:1 restarted: passes %d -> %d, events %s", before.Passes, after.Passes, rec.of("a:1"))
		}
	})

	t.Run("changed addr restarts and reports again", func(t *testing.T) {
		c.Set([]Target{tcpTarget("a:1"), {Name: "c:1", Addr: "b:2", Check: Check{Kind: KindTCP}}})
		waitFor(t, "c:1 second result", func() bool { return len(rec.of("c:1")) == 2 })
		if e := rec.of("c:1")[1]; e.healthy || e.err != errDown {
			t.Errorf("c:1 after the move: got %s, want unhealthy (down)", e)
		}
		st := c.Status()[1]
		if st.Addr != "b:2" || st.Passes != 0 || st.Failures == 0 {
			t.Errorf("c:1 status after the move: got %+v, want Addr b:2 with fresh counters", st)
		}
	})

	t.Run("changed check restarts and reports again", func(t *testing.T) {
		c.Set([]Target{{Name: "a:1", Addr: "a:1", Check: Check{Kind: KindRedis}}, {Name: "c:1", Addr: "b:2", Check: Check{Kind: KindTCP}}})
		waitFor(t, "a:1 second result", func() bool { return len(rec.of("a:1")) == 2 })
		if got := c.Status()[0].Check; got != "redis" {
			t.Errorf("a:1 check: got %q, want %q", got, "redis")
		}
	})

	t.Run("duplicate names: first wins", func(t *testing.T) {
		c.Set([]Target{tcpTarget("d:1"), {Name: "d:1", Addr: "other:1", Check: Check{Kind: KindTCP}}})
		waitFor(t, "d:1 result", func() bool { return len(rec.of("d:1")) == 1 })
		if st := c.Status(); len(st) != 1 || st[0].Addr != "d:1" {
			t.Errorf("Status: got %+v, want only d:1 at d:1", st)
		}
	})

	t.Run("empty set", func(t *testing.T) {
		c.Set(nil)
		if st := c.Status(); len(st) != 0 {
			t.Errorf("Status: got %+v, want none", st)
		}
	})
}

func names(rs []Result) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name.String())
	}
	return fmt.Sprint(out)
}

func TestCheckerSetBeforeStart(t *testing.T) {
	checkGoroutines(t)
	cfg, fp, rec := fakeSetup(t)
	c, err := New(cfg, rec.onChange)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Set([]Target{tcpTarget("a:1"), tcpTarget("b:1")})
	c.Set([]Target{tcpTarget("a:1")})
	if st := c.Status(); len(st) != 1 || st[0].Known || st[0].Name != "a:1" {
		t.Errorf("Status before Start: got %+v, want a:1 unknown", st)
	}
	if n := fp.count("a:1"); n != 0 {
		t.Errorf("checks before Start: got %d, want 0", n)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a:1 result", func() bool { return len(rec.of("a:1")) == 1 })
	if n := fp.count("b:1"); n != 0 {
		t.Errorf("checks of removed b:1: got %d, want 0", n)
	}
	if err := c.Start(t.Context()); err == nil {
		t.Error("second Start: got nil, want an error")
	}
}

// TestCheckerReplaceNoOverlap replaces a target while its onChange call is
// blocked: the new loop must not check or report until that call returns.
func TestCheckerReplaceNoOverlap(t *testing.T) {
	checkGoroutines(t)
	fp := newFakeProber()
	fp.set("old:1", errDown)
	rec := newRecorder(t, fp)
	entered := make(chan struct{})
	release := make(chan struct{})
	var (
		once     sync.Once
		inFlight atomic.Int32
	)
	onChange := func(name svcname.Name, healthy bool, err error) {
		if name == "svc" {
			if inFlight.Add(1) > 1 {
				t.Errorf("overlapping onChange calls for svc (healthy=%v)", healthy)
			}
			defer inFlight.Add(-1)
		}
		rec.onChange(name, healthy, err)
		if name == "svc" && !healthy {
			once.Do(func() { close(entered); <-release })
		}
	}
	cfg := testConfig(t)
	cfg.ProbeFunc = fp.probe
	c := newChecker(t, cfg, onChange, Target{Name: "svc", Addr: "old:1", Check: Check{Kind: KindTCP}}, tcpTarget("clock:1"))
	<-entered
	c.Set([]Target{{Name: "svc", Addr: "new:1", Check: Check{Kind: KindTCP}}, tcpTarget("clock:1")})
	// Give a wrong implementation ten intervals to check new:1 and report.
	from := fp.count("clock:1")
	waitFor(t, "ten checks of clock:1", func() bool { return fp.count("clock:1") >= from+10 })
	if st := c.Status(); len(st) != 2 || st[1].Addr != "new:1" || st[1].Known {
		t.Errorf("Status after replace: got %+v, want svc at new:1, unknown", st)
	}
	if n := fp.count("new:1"); n != 0 {
		t.Errorf("new:1 checked while the old loop's onChange ran: %d checks", n)
	}
	close(release)
	waitFor(t, "the new loop's first result", func() bool { return len(rec.of("svc")) == 2 })
	if e := rec.of("svc")[1]; !e.healthy {
		t.Errorf("second event: got %s, want healthy", e)
	}
}

func TestCheckerTimeout(t *testing.T) {
	checkGoroutines(t)
	rec := newRecorder(t, nil)
	cfg := testConfig(t)
	cfg.Timeout = 5 * time.Millisecond
	cfg.ProbeFunc = func(ctx context.Context, addr string, c Check) error {
		<-ctx.Done()
		return ctx.Err()
	}
	newChecker(t, cfg, rec.onChange, tcpTarget("slow:1"))
	waitFor(t, "a result", func() bool { return len(rec.of("slow:1")) == 1 })
	if e := rec.of("slow:1")[0]; e.healthy || !errors.Is(e.err, context.DeadlineExceeded) {
		t.Errorf("got %s, want unhealthy with context.DeadlineExceeded", e)
	}
}

// TestCheckerProbe runs the real Probe: a TCP service that goes away.
func TestCheckerProbe(t *testing.T) {
	checkGoroutines(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec := newRecorder(t, nil)
	cfg := testConfig(t)
	cfg.Timeout = 10 * time.Millisecond
	newChecker(t, cfg, rec.onChange, Target{Name: "svc", Addr: l.Addr().String(), Check: Check{Kind: KindTCP}})
	waitFor(t, "healthy", func() bool { return len(rec.of("svc")) == 1 })
	l.Close()
	waitFor(t, "unhealthy", func() bool { return len(rec.of("svc")) == 2 })
	evs := rec.of("svc")
	if !evs[0].healthy || evs[1].healthy || evs[1].err == nil {
		t.Errorf("got %s, want healthy then unhealthy with an error", evs)
	}
}

func TestCheckerClose(t *testing.T) {
	checkGoroutines(t)
	cfg, fp, rec := fakeSetup(t)
	c, err := New(cfg, rec.onChange)
	if err != nil {
		t.Fatal(err)
	}
	var targets []Target
	for i := range 20 {
		targets = append(targets, tcpTarget(fmt.Sprintf("t%d:1", i)))
	}
	c.Set(targets)
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every first result", func() bool {
		for _, tg := range targets {
			if len(rec.of(tg.Name.String())) == 0 {
				return false
			}
		}
		return true
	})

	errs := make(chan error, 3)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { errs <- c.Close() })
	}
	wg.Wait()
	close(errs)
	var nils int
	for err := range errs {
		switch {
		case err == nil:
			nils++
		case !errors.Is(err, net.ErrClosed):
			t.Errorf("concurrent Close: got %v, want nil or net.ErrClosed", err)
		}
	}
	if nils != 1 {
		t.Errorf("concurrent Close: %d returned nil, want 1", nils)
	}
	// Close has returned, so every loop has exited: counts are final.
	counts := make(map[string]int)
	for _, tg := range targets {
		counts[tg.Name.String()] = fp.count(tg.Name.String())
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: got %v, want net.ErrClosed", err)
	}
	if err := c.Start(t.Context()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Start after Close: got %v, want net.ErrClosed", err)
	}
	c.Set([]Target{tcpTarget("late:1")})
	if st := c.Status(); len(st) != len(targets) || !st[0].Known {
		t.Errorf("Status after Close: got %d results, want the last state of %d", len(st), len(targets))
	}
	for _, tg := range targets {
		if n := fp.count(tg.Name.String()); n != counts[tg.Name.String()] {
			t.Errorf("%s checked after Close: %d -> %d", tg.Name, counts[tg.Name.String()], n)
		}
	}
	// checkGoroutines verifies at cleanup that no loop is left.
}

func TestCheckerContextCancel(t *testing.T) {
	checkGoroutines(t)
	cfg, _, rec := fakeSetup(t)
	c, err := New(cfg, rec.onChange)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	c.Set([]Target{tcpTarget("a:1")})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a result", func() bool { return len(rec.of("a:1")) == 1 })
	cancel()
	// Loops end with ctx; Close still waits for them and succeeds.
	if err := c.Close(); err != nil {
		t.Errorf("Close after cancel: got %v, want nil", err)
	}
}

// TestCheckerCancelledCheckNotReported: a check cut short by Close or by Set
// removing its target says nothing about the service and must not be
// reported or recorded.
func TestCheckerCancelledCheckNotReported(t *testing.T) {
	for _, stop := range []string{"close", "set"} {
		t.Run(stop, func(t *testing.T) {
			checkGoroutines(t)
			rec := newRecorder(t, nil)
			entered := make(chan struct{}, 1)
			cfg := testConfig(t)
			cfg.Interval, cfg.Timeout = time.Hour, time.Hour
			cfg.ProbeFunc = func(ctx context.Context, addr string, c Check) error {
				entered <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
			c := newChecker(t, cfg, rec.onChange, tcpTarget("hang:1"))
			<-entered
			if stop == "close" {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				if st := c.Status(); len(st) != 1 || st[0].Known || st[0].Failures != 0 {
					t.Errorf("Status: got %+v, want hang:1 unknown with no failures", st)
				}
			} else {
				c.Set(nil)
				if err := c.Close(); err != nil { // waits for the cancelled loop
					t.Fatal(err)
				}
			}
			if evs := rec.of("hang:1"); len(evs) != 0 {
				t.Errorf("events: got %s, want none", evs)
			}
		})
	}
}
