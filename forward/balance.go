package forward

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Balance policies for Route.Balance. Each picks the first backend to try
// for a new connection among the backends of the lowest Priority that are
// not ejected (among all of the lowest Priority when every backend is
// ejected); the rest are then tried as failover, see Route.
const (
	// BalanceLeastConn picks the backend with the fewest outstanding
	// connections (open, or being dialed) per unit of Weight, the new one
	// included, scanning every backend; ties are broken at random. A
	// backend of a tiny Weight beside others (an SRV target of weight 0)
	// gets connections only when they are ejected or heavily loaded; see
	// chooseLocked. The default ("").
	BalanceLeastConn = "least-conn"
	// BalanceRoundRobin takes turns by smooth weighted round-robin (as in
	// nginx): over any run of sum(Weight) picks with no ejections, each
	// backend is picked exactly Weight times, spread out rather than in
	// bursts.
	BalanceRoundRobin = "round-robin"
	// BalanceRandom picks at random, with probability proportional to Weight.
	BalanceRandom = "random"
	// BalanceFirst is active/passive: it picks the first backend in the
	// route's order that is not ejected. Weight is ignored.
	BalanceFirst = "first"
)

// ValidBalance reports whether s names a balance policy: "" (the default,
// least-conn) or one of the Balance constants. It is safe for concurrent
// use.
func ValidBalance(s string) error {
	switch s {
	case "", BalanceLeastConn, BalanceRoundRobin, BalanceRandom, BalanceFirst:
		return nil
	}
	return fmt.Errorf("forward: balance policy %q is not one of %s, %s, %s, %s",
		s, BalanceLeastConn, BalanceRoundRobin, BalanceRandom, BalanceFirst)
}

// Passive ejection back-off: a backend whose dial fails is skipped for
// ejectMin, doubling per consecutive failure up to ejectMax. A successful
// dial resets it.
const (
	ejectMin = time.Second
	ejectMax = 30 * time.Second
)

// ejectBackoff returns the ejection time after fails consecutive failures
// (fails >= 1).
func ejectBackoff(fails int) time.Duration {
	d := ejectMin
	for i := 1; i < fails && d < ejectMax; i++ {
		d *= 2
	}
	return min(d, ejectMax)
}

// backendKey identifies a backend across Update calls.
type backendKey struct{ addr, service string }

func keyOf(b Backend) backendKey { return backendKey{b.Addr, b.Service.String()} }

// weight resolves Backend.Weight: below 1 counts as 1.
func weight(b Backend) uint64 { return uint64(max(b.Weight, 1)) }

// backendState is the balancing and ejection state of one backend of a
// listener. Every field is guarded by the owning routeState's mu.
type backendState struct {
	b Backend // the latest value from Update; Node and Weight may change

	active   uint64 // connections open or being dialed
	conns    uint64 // successful dials
	failures uint64 // failed dials
	fails    int    // consecutive failed dials; 0 after a success
	until    time.Time
	current  int64 // smooth weighted round-robin's current weight
}

func (bs *backendState) ejectedLocked(now time.Time) bool { return now.Before(bs.until) }

// attempt is one backend to try for a connection, with the Backend value
// copied while the lock was held.
type attempt struct {
	bs *backendState
	b  Backend
}

// chooseLocked returns the index in cands (not empty) that policy picks.
// intN returns a uniform int in [0, n).
func chooseLocked(policy string, cands []*backendState, intN func(int) int) int {
	switch policy {
	case BalanceFirst:
		return 0
	case BalanceRoundRobin:
		var total int64
		best := 0
		for i, bs := range cands {
			w := int64(weight(bs.b))
			bs.current += w
			total += w
			if bs.current > cands[best].current {
				best = i
			}
		}
		cands[best].current -= total
		return best
	case BalanceRandom:
		var total uint64
		for _, bs := range cands {
			total += weight(bs.b)
		}
		r := uint64(intN(int(total)))
		for i, bs := range cands {
			if w := weight(bs.b); r < w {
				return i
			} else {
				r -= w
			}
		}
		return len(cands) - 1 // not reached
	}
	// Least-conn: smallest (active+1)/weight, the connections per unit of
	// weight the backend would carry with this one, compared as
	// (active_a+1)*w_b < (active_b+1)*w_a; ties broken uniformly at random
	// by reservoir sampling. Counting the new connection is what makes a
	// small weight small (HAProxy's leastconn does the same): with
	// active/weight every idle backend ties at 0, so a backend of weight 1
	// beside one of 100 got half of the connections that came one at a
	// time, and one connection as soon as the other held any. Counted, it
	// gets its first once the other holds 99 or 100 (a tie at 99). An SRV target of weight 0
	// (RFC 2782: "a very small chance" while others have weight) reaches
	// here as weight 1 beside 100 per unit of SRV weight
	// (upstream.Target.Share), so it is a standby that takes connections
	// when the weighted targets of its priority are ejected, plus 1 in 100
	// per unit of SRV weight under heavy load. With unequal weights and no
	// load the heavier backend takes every connection; the shares show as
	// connections are held.
	best, ties := 0, 1
	for i := 1; i < len(cands); i++ {
		a, b := cands[i], cands[best]
		l, r := (a.active+1)*weight(b.b), (b.active+1)*weight(a.b)
		switch {
		case l < r:
			best, ties = i, 1
		case l == r:
			ties++
			if intN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}

// plan returns, for one new connection, the backends to try in order: the
// policy's choice among the backends of the lowest Priority that are not
// ejected, then the other backends that are not ejected, then the ejected
// ones as a last resort; each group in ascending Priority, and within one
// Priority in route order starting after the choice. It counts the choice
// as active; the caller counts the others with begin as it tries them, and
// ends each with failed or release.
func (rs *routeState) plan(now time.Time, intN func(int) int) (*Route, []attempt) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	all := rs.backends
	if len(all) == 0 {
		return rs.route, nil
	}
	cands := make([]*backendState, 0, len(all))
	for _, bs := range all {
		if !bs.ejectedLocked(now) {
			cands = append(cands, bs)
		}
	}
	if len(cands) == 0 {
		cands = append(cands, all...)
	}
	if rs.ranked {
		cands = lowestPriority(cands)
	}
	chosen := cands[chooseLocked(rs.route.Balance, cands, intN)]
	pos := 0
	for i, bs := range all {
		if bs == chosen {
			pos = i
		}
	}
	order := make([]attempt, 0, len(all))
	order = append(order, attempt{chosen, chosen.b})
	for _, ejected := range []bool{false, true} {
		group := len(order)
		for k := 1; k < len(all); k++ {
			if bs := all[(pos+k)%len(all)]; bs.ejectedLocked(now) == ejected {
				order = append(order, attempt{bs, bs.b})
			}
		}
		if rs.ranked {
			slices.SortStableFunc(order[group:], func(a, b attempt) int { return cmp.Compare(a.b.Priority, b.b.Priority) })
		}
	}
	chosen.active++
	return rs.route, order
}

// lowestPriority keeps, in place, the backends of cands (not empty) whose
// Priority is the lowest.
func lowestPriority(cands []*backendState) []*backendState {
	low := cands[0].b.Priority
	for _, bs := range cands[1:] {
		low = min(low, bs.b.Priority)
	}
	out := cands[:0]
	for _, bs := range cands {
		if bs.b.Priority == low {
			out = append(out, bs)
		}
	}
	return out
}

// begin counts bs as active for a failover attempt.
func (rs *routeState) begin(bs *backendState) {
	rs.mu.Lock()
	bs.active++
	rs.mu.Unlock()
}

// connected records a successful dial and ends any ejection. bs stays
// active until release.
func (rs *routeState) connected(bs *backendState) {
	rs.mu.Lock()
	bs.conns++
	bs.fails = 0
	bs.until = time.Time{}
	rs.mu.Unlock()
}

// failed records a failed dial, ends bs's active count for it, and ejects
// bs unless it is ejected already: dials that were in flight when it was
// ejected, or last-resort tries, do not stretch the back-off. It returns
// the back-off it started, or 0.
func (rs *routeState) failed(bs *backendState, now time.Time) time.Duration {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	bs.active--
	bs.failures++
	if bs.ejectedLocked(now) {
		return 0
	}
	bs.fails++
	d := ejectBackoff(bs.fails)
	bs.until = now.Add(d)
	return d
}

// release ends bs's active count for one attempt or connection.
func (rs *routeState) release(bs *backendState) {
	rs.mu.Lock()
	bs.active--
	rs.mu.Unlock()
}

// setRoute installs r (Backends already deduplicated by key), keeping the
// state of backends whose (Addr, Service) it still lists.
func (rs *routeState) setRoute(r *Route) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	old := make(map[backendKey]*backendState, len(rs.backends))
	for _, bs := range rs.backends {
		old[keyOf(bs.b)] = bs
	}
	next := make([]*backendState, 0, len(r.Backends))
	for _, b := range r.Backends {
		bs := old[keyOf(b)]
		if bs == nil {
			bs = &backendState{}
		}
		bs.b = b
		next = append(next, bs)
	}
	rs.route, rs.backends = r, next
	rs.ranked = false
	for _, b := range r.Backends {
		rs.ranked = rs.ranked || b.Priority != r.Backends[0].Priority
	}
}

// snapshot returns the route and its per-backend stats.
func (rs *routeState) snapshot(now time.Time) (*Route, []BackendStatus) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]BackendStatus, len(rs.backends))
	for i, bs := range rs.backends {
		out[i] = BackendStatus{
			Backend:  bs.b,
			Active:   bs.active,
			Conns:    bs.conns,
			Failures: bs.failures,
		}
		if bs.ejectedLocked(now) {
			out[i].Ejected, out[i].EjectedUntil = true, bs.until
		}
	}
	return rs.route, out
}

// dedupeBackends returns a copy of bs that keeps the first of each
// (Addr, Service).
func dedupeBackends(bs []Backend) []Backend {
	out := make([]Backend, 0, len(bs))
	seen := make(map[backendKey]bool, len(bs))
	for _, b := range bs {
		if k := keyOf(b); !seen[k] {
			seen[k] = true
			out = append(out, b)
		}
	}
	return out
}
