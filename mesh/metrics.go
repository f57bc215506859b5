package mesh

import (
	"net/http"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/internal/promtext"
)

// The metric names and labels are fixed: dashboards and tests depend on
// them (README, "Metrics").
var (
	descConnections = promtext.NewDesc("ambassador_connections_total",
		"Connections accepted by this node's listener for the service.", []string{"service"})
	descActive = promtext.NewDesc("ambassador_connections_active",
		"Connections open now through this node's listener for the service, and through one it had before that moved or closed.", []string{"service"})
	descFailures = promtext.NewDesc("ambassador_connection_failures_total",
		"Failures on this node's listener for the service, by reason: dial (one instance could not be reached: "+
			"connect refused or unreachable, no connect within --dial-timeout, or no TLS handshake and handoff reply within "+
			forward.DefaultConfig().HandoffTimeout.String()+" after it), "+
			"handoff_refused (a peer's data port answered the handoff with a refusal: unknown service, its instance down); "+
			"after either the connection moved on if another instance was left; no_instance (every instance failed: the client's connection was closed), "+
			"handshake (the credentials login failed), stream (reset mid-stream), idle_timeout, half_close_timeout.",
		[]string{"service", "reason"})
	descRetries = promtext.NewDesc("ambassador_connection_retries_total",
		"Connections moved on to the next instance after a failed dial or refused handoff, and extra connect attempts "+
			"to the same instance started next to one that had no answer after 250ms (a lost SYN).", []string{"service"})
	descBytes = promtext.NewDesc("ambassador_bytes_total",
		"Bytes copied through this node's listener for the service: in is client to service, out is service to client.",
		[]string{"service", "direction"})
	descConnect = promtext.NewDesc("ambassador_upstream_connect_seconds",
		"Time to reach an instance of the service: the dial, plus TLS and the handoff for a peer's instance.", []string{"service"})
	descHandoffs = promtext.NewDesc("ambassador_handoffs_total",
		"Handoffs on this node's data port, by service and result: ok, unavailable (the local service did not answer); "+
			"with an empty service: unknown (not a service of this node), bad_header, incomplete (no header in time), "+
			"tls_failed (the peer failed the TLS handshake).", []string{"service", "result"})
	descMembers = promtext.NewDesc("ambassador_members",
		"Members this node knows, by state: alive, suspect, dead, left.", []string{"state"})
	descInstances = promtext.NewDesc("ambassador_service_instances",
		"Instances of the service this node knows, by health: passing or failing (a peer's, from gossip); for this node's own also pending or unchecked.",
		[]string{"service", "health"})
	descChecks = promtext.NewDesc("ambassador_health_checks_total",
		"Health checks of this node's own services, by result: pass or fail.", []string{"service", "result"})
)

// failureReasons are the reason label values of
// ambassador_connection_failures_total, always all exported.
var failureReasons = []string{"dial", "handoff_refused", "no_instance", "handshake", "stream", "idle_timeout", "half_close_timeout"}

// memberStates are always exported, zeros included, so that a dashboard
// sees "0 dead" rather than no series.
var memberStates = []string{"alive", "suspect", "dead", "left"}

// nodeCollector reads the node's snapshots (listener status, data port
// stats, members, catalog, health) at scrape time and turns them into
// constant metrics: the data path only bumps the atomic counters it keeps
// anyway, and no label is looked up per connection.
type nodeCollector struct{ n *Node }

func (c nodeCollector) Collect(add func(promtext.Metric)) {
	n := c.n
	counter := func(d *promtext.Desc, v uint64, labels ...string) {
		add(promtext.MustNewConstMetric(d, promtext.CounterValue, float64(v), labels...))
	}
	gauge := func(d *promtext.Desc, v uint64, labels ...string) {
		add(promtext.MustNewConstMetric(d, promtext.GaugeValue, float64(v), labels...))
	}

	// One listener per service and node; summed by service all the same,
	// since two series with one label set would fail the scrape.
	type listenerSums struct {
		accepted, active, retries, bytesIn, bytesOut uint64
		fail                                         map[string]uint64
	}
	byService := map[string]*listenerSums{}
	var order []string
	listeners := n.proxy.Status()
	for _, ls := range listeners {
		s := byService[ls.Service]
		if s == nil {
			s = &listenerSums{fail: map[string]uint64{}}
			byService[ls.Service] = s
			order = append(order, ls.Service)
		}
		s.accepted += ls.Accepted
		s.active += ls.Active
		s.bytesIn += ls.BytesIn
		s.bytesOut += ls.BytesOut
		s.retries += ls.Retries
		s.fail["dial"] += ls.DialErrors - ls.HandoffRefused // DialErrors includes them
		s.fail["handoff_refused"] += ls.HandoffRefused
		s.fail["no_instance"] += ls.NoBackend
		s.fail["handshake"] += ls.HandshakeErrors
		s.fail["stream"] += ls.StreamErrors
		s.fail["idle_timeout"] += ls.IdleTimeouts
		s.fail["half_close_timeout"] += ls.HalfCloseTimeouts
	}
	// Connections still open through a listener that moved or closed
	// count with the service's open ones; a service with no listener now
	// has only that gauge until they close.
	elsewhere := openElsewhere(listeners, n.proxy.Connections())
	for _, name := range order {
		s := byService[name]
		counter(descConnections, s.accepted, name)
		gauge(descActive, s.active+elsewhere[name], name)
		delete(elsewhere, name)
		counter(descRetries, s.retries, name)
		counter(descBytes, s.bytesIn, name, "in")
		counter(descBytes, s.bytesOut, name, "out")
		for _, reason := range failureReasons {
			counter(descFailures, s.fail[reason], name, reason)
		}
	}
	for name, open := range elsewhere { // promtext sorts the samples
		gauge(descActive, open, name)
	}
	seen := map[string]bool{}
	for _, ct := range n.proxy.ConnectTimes() {
		if !seen[ct.Service] { // one listener per service; see above
			seen[ct.Service] = true
			add(promtext.MustNewConstHistogram(descConnect, ct.Count, ct.Sum, ct.Buckets, ct.Service))
		}
	}
	// ok and unavailable by service; the rest never named one of this
	// node's services (an unknown name is not a label: anyone can send one).
	for _, h := range n.data.HandoffsByService() {
		counter(descHandoffs, h.OK, h.Service, "ok")
		counter(descHandoffs, h.Unavailable, h.Service, "unavailable")
	}
	ds := n.data.Stats()
	counter(descHandoffs, ds.HandoffUnknown, "", "unknown")
	counter(descHandoffs, ds.HandoffBadHeader, "", "bad_header")
	counter(descHandoffs, ds.HandoffIncomplete, "", "incomplete")
	counter(descHandoffs, ds.TLSHandshakeFailed, "", "tls_failed")

	members := map[string]uint64{}
	for _, m := range n.cluster.Members() {
		members[m.State]++
	}
	for _, st := range memberStates {
		gauge(descMembers, members[st], st)
	}

	type svcHealth struct{ service, health string }
	inst := map[svcHealth]uint64{}
	var keys []svcHealth
	for _, sv := range n.ServicesView().Services {
		for _, in := range sv.Instances {
			k := svcHealth{sv.Name, in.Health}
			if inst[k] == 0 {
				keys = append(keys, k)
			}
			inst[k]++
		}
	}
	for _, k := range keys {
		gauge(descInstances, inst[k], k.service, k.health)
	}
	checks := map[string][2]uint64{}
	var names []string
	for _, r := range n.checker.Status() {
		c, ok := checks[r.Name.String()]
		if !ok {
			names = append(names, r.Name.String())
		}
		c[0] += r.Passes
		c[1] += r.Failures
		checks[r.Name.String()] = c
	}
	for _, name := range names {
		counter(descChecks, checks[name][0], name, "pass")
		counter(descChecks, checks[name][1], name, "fail")
	}
}

// metricsHandler serves GET /metrics: the node's own metrics read at
// scrape time, with the Go and process collectors.
func (n *Node) metricsHandler() http.Handler {
	return promtext.Handler(promtext.GoCollector(), promtext.ProcessCollector(), nodeCollector{n})
}
