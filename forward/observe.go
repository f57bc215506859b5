package forward

import (
	"cmp"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// connectBounds are the upper bounds, in seconds, of the connect-time
// histogram (ConnectTime): from a loopback dial (tens of µs) to a peer
// across a slow link with TLS (hundreds of ms), and DialTimeout's range.
var connectBounds = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// ConnectBuckets are connectBounds for callers; do not modify.
var ConnectBuckets = connectBounds[:]

// connectHistogram counts the times a route took to reach a backend: the
// dial, plus TLS and the handoff for a peer's data port. Lock-free; one
// observe per connection.
type connectHistogram struct {
	buckets [len(connectBounds) + 1]atomic.Uint64 // per ConnectBuckets entry, not cumulative; the last is +Inf
	nanos   atomic.Uint64                         // sum of the observed times
}

func (h *connectHistogram) observe(d time.Duration) {
	i := sort.SearchFloat64s(ConnectBuckets, d.Seconds()) // the first bound >= d
	h.buckets[i].Add(1)
	h.nanos.Add(uint64(d))
}

// ConnectTime is a snapshot of one listener's connect-time histogram,
// returned by Proxy.ConnectTimes.
type ConnectTime struct {
	Service string
	Listen  string
	Count   uint64  // connections that reached a backend
	Sum     float64 // seconds, over Count
	// Buckets maps each ConnectBuckets bound to the number of connect
	// times <= it (cumulative, as Prometheus wants); Count is +Inf's.
	Buckets map[float64]uint64
}

// ConnectTimes returns the connect-time histogram of every listener,
// sorted by Listen. Safe for concurrent use; the caller owns the result.
// Counts start from zero when a route is added again after being removed.
func (p *Proxy) ConnectTimes() []ConnectTime {
	p.mu.Lock()
	rss := make([]*routeState, 0, len(p.routes))
	for _, rs := range p.routes {
		rss = append(rss, rs)
	}
	p.mu.Unlock()
	out := make([]ConnectTime, 0, len(rss))
	for _, rs := range rss {
		ct := ConnectTime{Service: rs.service(), Listen: rs.listen, Buckets: make(map[float64]uint64, len(ConnectBuckets))}
		for i, le := range ConnectBuckets {
			ct.Count += rs.connect.buckets[i].Load()
			ct.Buckets[le] = ct.Count
		}
		ct.Count += rs.connect.buckets[len(ConnectBuckets)].Load()
		ct.Sum = time.Duration(rs.connect.nanos.Load()).Seconds()
		out = append(out, ct)
	}
	slices.SortFunc(out, func(a, b ConnectTime) int { return cmp.Compare(a.Listen, b.Listen) })
	return out
}

// ServiceHandoffs counts the handoffs of one service on a Server's data
// port, returned by Server.HandoffsByService.
type ServiceHandoffs struct {
	Service     string
	OK          uint64 // status "ok"
	Unavailable uint64 // status "backend unavailable"
}

// handoffsByService counts handoffs per service name that lookup knew, so
// the names are bounded by what this node offers; a name lookup does not
// know counts only in ServerStats.HandoffUnknown.
type handoffsByService struct {
	m sync.Map // service name → *[2]atomic.Uint64 (ok, unavailable)
}

func (h *handoffsByService) add(service string, ok bool) {
	v, found := h.m.Load(service)
	if !found {
		v, _ = h.m.LoadOrStore(service, new([2]atomic.Uint64))
	}
	i := 1
	if ok {
		i = 0
	}
	v.(*[2]atomic.Uint64)[i].Add(1)
}

// HandoffsByService returns the handoff counts of every service the data
// port has handed off or failed to, sorted by Service. Safe for concurrent
// use, also before Start and after Shutdown.
func (s *Server) HandoffsByService() []ServiceHandoffs {
	var out []ServiceHandoffs
	s.handoffsBy.m.Range(func(k, v any) bool {
		c := v.(*[2]atomic.Uint64)
		out = append(out, ServiceHandoffs{Service: k.(string), OK: c[0].Load(), Unavailable: c[1].Load()})
		return true
	})
	slices.SortFunc(out, func(a, b ServiceHandoffs) int { return cmp.Compare(a.Service, b.Service) })
	return out
}
