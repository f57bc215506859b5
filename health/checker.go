package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Config configures a Checker. Zero values are not defaults: start from
// DefaultConfig and override fields. New copies the Config, so later changes
// by the caller have no effect.
type Config struct {
	// Interval is the time between the starts of two checks of one target.
	// Default 2s; must be > 0.
	Interval time.Duration
	// Timeout bounds one check. Default 1s; must be > 0 and <= Interval.
	Timeout time.Duration
	// Rise is how many consecutive passing checks an unhealthy target needs
	// to become healthy. Default 1; must be >= 1.
	Rise int
	// Fall is how many consecutive failing checks a healthy target needs to
	// become unhealthy. Default 1; must be >= 1.
	Fall int
	// Logger receives the component's logs, with component=health added.
	// nil = slog.Default().
	Logger *slog.Logger

	// ProbeFunc runs one check. nil = Probe. It must return once ctx ends.
	// A seam for tests.
	ProbeFunc func(ctx context.Context, addr string, c Check) error
}

// DefaultConfig returns a Config with every default set. It does no I/O and
// is safe for concurrent use.
func DefaultConfig() Config {
	return Config{
		Interval: 2 * time.Second, // a dead service is withdrawn within about 2s
		Timeout:  1 * time.Second, // a local service answers in ms; leave room for a loaded host
		Rise:     1,               // back in as soon as it answers
		Fall:     1,               // out as soon as it fails; local checks don't see network loss
	}
}

// validate reports the first invalid field. It has no side effects.
func (c *Config) validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("health: config: Interval %v must be > 0", c.Interval)
	case c.Timeout <= 0:
		return fmt.Errorf("health: config: Timeout %v must be > 0", c.Timeout)
	case c.Timeout > c.Interval:
		return fmt.Errorf("health: config: Timeout %v must be <= Interval %v", c.Timeout, c.Interval)
	case c.Rise < 1:
		return fmt.Errorf("health: config: Rise %d must be >= 1", c.Rise)
	case c.Fall < 1:
		return fmt.Errorf("health: config: Fall %d must be >= 1", c.Fall)
	}
	return nil
}

// Target is one service to check: Check is run against Addr (host:port).
// Name identifies it in Set, Status and onChange.
type Target struct {
	Name  svcname.Name
	Addr  string
	Check Check
}

// Result is the state of one target, as returned by Status.
type Result struct {
	Name  svcname.Name
	Addr  string
	Check string // Check.String()
	// Healthy is the current state after Rise/Fall; meaningful only when
	// Known.
	Healthy bool
	// Known is false until the first check of the target (or of its current
	// Addr and Check, after Set replaced them) has finished.
	Known bool
	// LastErr is the error of the latest check; "" when it passed.
	LastErr string
	// LastCheck is when the latest check finished; zero until then.
	LastCheck time.Time
	// Passes and Failures count all checks that passed and failed since the
	// target was added or last replaced.
	Passes, Failures uint64
}

// Checker runs the checks of a set of targets, each in its own goroutine on
// its own ticker, and reports state flips through the onChange callback given
// to New. All methods are safe for concurrent use. Create it with New.
type Checker struct {
	cfg      Config // read-only after New
	log      *slog.Logger
	probe    func(ctx context.Context, addr string, c Check) error
	onChange func(name svcname.Name, healthy bool, err error)
	wg       sync.WaitGroup // one per running target loop

	mu      sync.Mutex
	targets map[svcname.Name]*target       // guarded by mu; keyed by Target.Name
	last    map[svcname.Name]chan struct{} // guarded by mu; done of the newest loop per name
	ctx     context.Context                // guarded by mu; nil until Start
	cancel  context.CancelFunc             // guarded by mu; nil until Start
	closed  bool                           // guarded by mu
}

// target is the runtime state of one Target.
type target struct {
	t Target // read-only

	// Guarded by Checker.mu.
	cancel           context.CancelFunc // stops the loop; nil until it starts
	res              Result
	passRun, failRun int // consecutive passes and failures
}

// New validates cfg and returns a Checker with no targets. It starts
// nothing. onChange(name, healthy, err) is called whenever a target's state
// flips, and for its first result either way; err is the error of the check
// that made it unhealthy, nil when healthy. Calls come from the Checker's
// goroutines; calls for one name never overlap (also across Set replacing
// the target) but calls for different names may. onChange must not block for
// long and must not call Close, which waits for it (Set and Status are fine).
// nil = no callback (use Status).
func New(cfg Config, onChange func(name svcname.Name, healthy bool, err error)) (*Checker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("component", "health")
	probe := cfg.ProbeFunc
	if probe == nil {
		probe = Probe
	}
	if onChange == nil {
		onChange = func(svcname.Name, bool, error) {}
	}
	return &Checker{
		cfg:      cfg,
		log:      cfg.Logger,
		probe:    probe,
		onChange: onChange,
		targets:  make(map[svcname.Name]*target),
		last:     make(map[svcname.Name]chan struct{}),
	}, nil
}

// Set makes the checked targets match targets, keyed by Name; for a duplicate
// Name the first target wins. New targets start unknown and are checked at
// once; removed targets stop being checked; a target whose Addr or Check
// changed is replaced: its loop restarts and it is unknown again, so its next
// result is reported. Unchanged targets keep running and keep their state.
//
// Set does not block on running checks: it cancels them and returns. A call
// of onChange for a removed target that was already under way may still be
// running, or about to start, when Set returns; callers should ignore names
// they no longer track. For a replaced target the order holds: the old loop's
// last call ends before the new loop's first check starts.
//
// Before Start, Set only records the targets. After Close it does nothing.
// Set copies targets.
func (c *Checker) Set(targets []Target) {
	want := make(map[svcname.Name]Target, len(targets))
	for _, t := range targets {
		if _, dup := want[t.Name]; !dup {
			want[t.Name] = t
		}
	}
	var added, removed int
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	for name, tg := range c.targets {
		if w, ok := want[name]; ok && w == tg.t {
			continue
		}
		if tg.cancel != nil {
			tg.cancel()
		}
		delete(c.targets, name)
		removed++
	}
	for name, t := range want {
		if _, ok := c.targets[name]; ok {
			continue
		}
		tg := &target{t: t, res: Result{Name: t.Name, Addr: t.Addr, Check: t.Check.String()}}
		c.targets[name] = tg
		added++
		if c.ctx != nil {
			c.startLocked(tg)
		}
	}
	for name, done := range c.last {
		if _, ok := c.targets[name]; !ok && isClosed(done) {
			delete(c.last, name)
		}
	}
	n := len(c.targets)
	c.mu.Unlock()
	if added > 0 || removed > 0 {
		c.log.Debug("targets updated", "targets", n, "added", added, "removed", removed)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// startLocked starts tg's loop under the Checker's context. c.mu must be held
// and c.ctx set.
func (c *Checker) startLocked(tg *target) {
	ctx, cancel := context.WithCancel(c.ctx)
	tg.cancel = cancel
	prev := c.last[tg.t.Name]
	done := make(chan struct{})
	c.last[tg.t.Name] = done
	c.wg.Go(func() {
		defer close(done)
		defer cancel()
		if prev != nil {
			// The previous loop for this name was canceled before we were
			// created; wait for it so onChange calls for a name never overlap.
			<-prev
		}
		c.run(ctx, tg)
	})
}

// run checks tg at once and then every Interval until ctx ends.
func (c *Checker) run(ctx context.Context, tg *target) {
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for ctx.Err() == nil { // select below may pick the tick even after a cancel
		c.check(ctx, tg)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check runs one probe of tg, records the result and reports a flip.
func (c *Checker) check(ctx context.Context, tg *target) {
	pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	err := c.probe(pctx, tg.t.Addr, tg.t.Check)
	cancel()

	c.mu.Lock()
	if ctx.Err() != nil {
		// Removed, replaced or stopped while checking: the result may be
		// the cancel itself and no longer matters. Checked under mu because
		// Set cancels under mu.
		c.mu.Unlock()
		return
	}
	flipped := tg.recordLocked(err, time.Now(), c.cfg.Rise, c.cfg.Fall)
	healthy := tg.res.Healthy
	c.mu.Unlock()

	switch {
	case !flipped:
		if err != nil && healthy {
			c.log.Debug("check failed, still healthy", "service", tg.t.Name, "backend", tg.t.Addr, "err", err)
		}
		return
	case healthy:
		c.log.Info("service healthy", "service", tg.t.Name, "backend", tg.t.Addr, "check", tg.res.Check)
		c.onChange(tg.t.Name, true, nil)
	default:
		c.log.Info("service unhealthy", "service", tg.t.Name, "backend", tg.t.Addr, "check", tg.res.Check, "err", err)
		c.onChange(tg.t.Name, false, err)
	}
}

// recordLocked adds one check result to tg and reports whether it flipped
// the state (the first result always does). Checker.mu must be held.
func (tg *target) recordLocked(err error, now time.Time, rise, fall int) (flipped bool) {
	r := &tg.res
	r.LastCheck = now
	if err == nil {
		r.Passes++
		r.LastErr = ""
		tg.passRun, tg.failRun = tg.passRun+1, 0
	} else {
		r.Failures++
		r.LastErr = err.Error()
		tg.passRun, tg.failRun = 0, tg.failRun+1
	}
	switch {
	case !r.Known:
		r.Known, r.Healthy = true, err == nil
	case r.Healthy && tg.failRun >= fall:
		r.Healthy = false
	case !r.Healthy && tg.passRun >= rise:
		r.Healthy = true
	default:
		return false
	}
	return true
}

// Start starts checking every target set so far, and those Set adds later.
// The loops stop when ctx ends or on Close. It does not block. It returns an
// error if called twice, and one matching net.ErrClosed after Close.
func (c *Checker) Start(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return fmt.Errorf("health: start: %w", net.ErrClosed)
	case c.ctx != nil:
		c.mu.Unlock()
		return errors.New("health: start: already started")
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	for _, tg := range c.targets {
		c.startLocked(tg)
	}
	n := len(c.targets)
	c.mu.Unlock()
	c.log.Info("health checker started", "targets", n, "interval", c.cfg.Interval, "timeout", c.cfg.Timeout)
	return nil
}

// Status returns the state of every target, sorted by Name. The slice is
// the caller's. It does not block on checks.
func (c *Checker) Status() []Result {
	c.mu.Lock()
	out := make([]Result, 0, len(c.targets))
	for _, tg := range c.targets {
		out = append(out, tg.res)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Result) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Close stops every loop, cancelling running checks (an exec check's process
// group is killed), and returns once all of the Checker's goroutines have
// exited, including a running onChange call. Status keeps the last state.
// Safe to call more than once and concurrently: later calls return at once
// with an error matching net.ErrClosed. Do not call it from onChange.
func (c *Checker) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("health: close: %w", net.ErrClosed)
	}
	c.closed = true
	started := c.cancel != nil
	if started {
		c.cancel() // the parent of every loop's context
	}
	c.mu.Unlock()
	// No loop can be added now: Set and Start check closed under mu.
	c.wg.Wait()
	if started {
		c.log.Info("health checker stopped")
	}
	return nil
}
