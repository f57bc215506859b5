package upstream

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// watch is one running Watch.
type watch struct {
	spec    Spec
	refresh chan struct{} // 1-buffered; Refresh does a non-blocking send
	cancel  context.CancelFunc
}

// Watch keeps the targets of s up to date under name. It resolves s now,
// then again when the TTL runs out, or after the retry back-off (RetryMin
// doubling to RetryMax) when a resolution fails; a failure keeps the last
// good targets and is not reported to onChange. onChange gets the first
// successful result (even an empty one) and then every result whose set of
// targets (Addr, Priority, Weight) differs from the previous one; a new
// random order alone is not a change.
//
// onChange runs on the watch's own goroutine, never concurrently with
// itself for that name; while it runs, the watch does not re-resolve. The
// slice is the callee's to keep. onChange must not call Close (it would
// wait for itself); calling Refresh or Watch from it is fine.
//
// Watch returns at once. The watch ends when ctx is cancelled or Close is
// called. Watching a name that is already watched replaces the old watch
// (a callback of the old one already running may still finish). After
// Close, Watch does nothing.
func (r *Resolver) Watch(ctx context.Context, name svcname.Name, s Spec, onChange func(name svcname.Name, targets []Target)) {
	wctx, cancel := context.WithCancel(ctx)
	w := &watch{spec: s, refresh: make(chan struct{}, 1), cancel: cancel}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		r.log.Warn("watch after close ignored", "service", name, "upstream", s.String())
		return
	}
	old := r.watches[name]
	r.watches[name] = w
	// wg.Go under mu: Close sets closed under mu before it waits, so no Go
	// can race with Wait.
	r.wg.Go(func() {
		defer cancel()
		stop := context.AfterFunc(r.ctx, cancel)
		defer stop()
		r.run(wctx, name, w, onChange)
		r.mu.Lock()
		if r.watches[name] == w {
			delete(r.watches, name)
		}
		r.mu.Unlock()
	})
	r.mu.Unlock()
	if old != nil {
		old.cancel()
	}
}

// Refresh makes the watch of name re-resolve now, or MinTTL after its
// previous resolution if that was more recent, so a caller whose targets all
// failed cannot flood the DNS servers. It never blocks; several Refresh
// calls before the watch gets to them count as one. Unknown names are
// ignored.
func (r *Resolver) Refresh(name svcname.Name) {
	r.mu.Lock()
	w := r.watches[name]
	r.mu.Unlock()
	if w == nil {
		return
	}
	select {
	case w.refresh <- struct{}{}:
	default:
	}
}

// Close stops every watch and returns after their goroutines have exited
// (a query in flight is abandoned at once; a running onChange is waited
// for). It is safe to call more than
// once and concurrently; calls after the first return an error matching
// net.ErrClosed.
func (r *Resolver) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("upstream: close: %w", net.ErrClosed)
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.log.Info("stopped")
	return nil
}

func (r *Resolver) run(ctx context.Context, name svcname.Name, w *watch, onChange func(svcname.Name, []Target)) {
	log := r.log.With("service", name, "upstream", w.spec.String())
	var (
		last     []Target // sorted by targetKey; nil until the first success
		have     bool
		failing  bool
		backoff  time.Duration
		lastRun  time.Time
		deadline = time.Now()
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.refresh:
			// Go 1.23+ timers: Reset needs no drain, and a stale fire
			// cannot arrive after it.
			at := lastRun.Add(r.cfg.MinTTL)
			if at.Before(deadline) {
				deadline = at
				timer.Reset(time.Until(at))
			}
			continue
		case <-timer.C:
		}

		lastRun = time.Now()
		targets, ttl, err := r.Resolve(ctx, w.spec)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			backoff = min(max(backoff*2, r.cfg.RetryMin), r.cfg.RetryMax)
			// One Warn per outage; the retries in between are Debug.
			lvl := slog.LevelWarn
			if failing {
				lvl = slog.LevelDebug
			}
			log.Log(ctx, lvl, "resolution failed, keeping last targets", "targets", len(last), "retry", backoff, "err", err)
			failing = true
			deadline = time.Now().Add(backoff)
			timer.Reset(backoff)
			continue
		}
		if failing {
			log.Info("resolution recovered")
		}
		failing, backoff = false, 0
		deadline = time.Now().Add(ttl)
		timer.Reset(ttl)

		sorted := sortedTargets(targets)
		if have && slices.Equal(sorted, last) {
			continue
		}
		have, last = true, sorted
		log.Info("targets changed", "targets", len(targets), "ttl", ttl)
		onChange(name, targets)
	}
}

func sortedTargets(ts []Target) []Target {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b Target) int {
		return cmp.Or(cmp.Compare(a.Addr, b.Addr), cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Weight, b.Weight))
	})
	if out == nil {
		out = []Target{}
	}
	return out
}
