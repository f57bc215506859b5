package mesh

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ambassador-mesh/ambassador/announce"
	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/gossip"
	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/trust"
	"github.com/ambassador-mesh/ambassador/upstream"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// ErrNotAnnounced is returned by Withdraw for a service this node does not
// announce.
var ErrNotAnnounced = errors.New("mesh: service is not announced by this node")

// localView is a consistent copy of what this node hosts and forwards,
// taken under n.mu and used without it.
type localView struct {
	announces []Announce
	forwards  []Forward
	balance   map[string]string
	upstreams []Upstream
	upTargets map[string][]upstream.Target // resolved targets by lower-case name
	checks    map[string]health.Check
	healthy   map[string]bool // last check result; missing = not checked yet
	logins    map[string]handshakeFunc
}

func (n *Node) view() localView {
	n.mu.Lock()
	defer n.mu.Unlock()
	return localView{
		announces: slices.Clone(n.announces),
		forwards:  slices.Clone(n.forwards),
		balance:   maps.Clone(n.balance),
		upstreams: n.cfg.Upstream, // fixed at New
		upTargets: maps.Clone(n.upTargets),
		checks:    maps.Clone(n.checks),
		healthy:   maps.Clone(n.healthy),
		logins:    maps.Clone(n.logins),
	}
}

// check is the health check of an announced service: TCP unless set.
func (v localView) check(name svcname.Name) health.Check { return checkOf(v.checks, name) }

// checkOf is the check that checks (by lower-case name) gives service
// name: TCP unless set, so no entry and an explicit tcp are the same check.
func checkOf(checks map[string]health.Check, name svcname.Name) health.Check {
	if c, ok := checks[name.Lower().String()]; ok {
		return c
	}
	return health.Check{Kind: health.KindTCP}
}

// passing reports whether an announced service may be offered: its check
// is off, or its last check passed. A service not checked yet is held back
// for the first check (immediate at start) so peers never learn of a
// service that was down all along.
func (v localView) passing(name svcname.Name) bool { return passing(v.checks, v.healthy, name) }

// passing is localView.passing over the maps it reads, for callers that
// hold n.mu and need no copy.
func passing(checks map[string]health.Check, healthy map[string]bool, name svcname.Name) bool {
	if checkOf(checks, name).Kind == health.KindNone {
		return true
	}
	return healthy[name.Lower().String()]
}

// localService is one service this node offers to the cluster: an
// announcement (one target) or a resolved upstream (its DNS targets).
type localService struct {
	Name     svcname.Name // lower case
	Port     int
	Weight   int               // advertised to peers; 0 = 1
	Backends []forward.Backend // direct, in the order to try them
}

// services lists what this node offers now. An upstream with no resolved
// target is left out: no instance of it is reachable through this node.
func (v localView) services(self string) []localService {
	var out []localService
	for _, a := range v.announces {
		if !v.passing(a.Name) {
			continue
		}
		out = append(out, localService{Name: a.Name.Lower(), Port: a.Port, Weight: a.Weight,
			Backends: []forward.Backend{{Node: self, Addr: a.Target(), Weight: a.Weight}}})
	}
	for _, u := range v.upstreams {
		name := u.Name.Lower()
		if ts := v.upTargets[name.String()]; len(ts) > 0 {
			out = append(out, localService{Name: name, Port: u.Port, Backends: upstreamBackends(self, ts)})
		}
	}
	return out
}

// Announce adds a service to those this node hosts, or replaces the one of
// the same name, and tells the cluster and mDNS at once. Safe for
// concurrent use; it does not block on the network.
func (n *Node) Announce(a Announce) error {
	if _, err := ParseAnnounce(a.String()); err != nil {
		return fmt.Errorf("mesh: announce: %w", err)
	}
	n.mu.Lock()
	i := indexByName(n.announces, a.Name)
	if i >= 0 {
		if n.announces[i].Target() != a.Target() {
			// The old result says nothing about the new target: hold the
			// service back until its first check.
			delete(n.healthy, a.Name.Lower().String())
		}
		n.announces[i] = a
	} else {
		n.announces = append(n.announces, a)
	}
	n.mu.Unlock()
	n.log.Info("announcing", "service", a.Name, "port", a.Port, "backend", a.Target())
	n.publish()
	return nil
}

// Withdraw stops announcing a service: peers stop sending new connections
// within a gossip round, mDNS sends goodbyes, and this node's data port
// refuses new hand-offs for it (peers then try another instance).
// Connections already open run on. Safe for concurrent use.
func (n *Node) Withdraw(name svcname.Name) error {
	if err := svcname.Check(name.String()); err != nil {
		return fmt.Errorf("mesh: withdraw: %w", err)
	}
	n.mu.Lock()
	i := indexByName(n.announces, name)
	if i >= 0 {
		n.announces = slices.Delete(n.announces, i, i+1)
		delete(n.healthy, name.Lower().String())
	}
	n.mu.Unlock()
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrNotAnnounced, name)
	}
	n.log.Info("withdrawn", "service", name)
	n.publish()
	return nil
}

// Reload replaces what can change at run time (forwards, balance
// policies, health checks, credentials and the cluster keys) with cfg's, as
// SIGHUP does, and applies the change in cfg's announcements since the
// last start or reload (see mergeAnnounces). Settings that need a restart (ports, names,
// interfaces, profile, turning encryption on or off) are compared and
// reported in the returned error, and otherwise ignored.
func (n *Node) Reload(cfg Config) error {
	// One reload at a time: each compares with and then replaces what the
	// last one left (the configured announcements, the keys).
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Credentials files are read again even when the flags did not
	// change: rotating a password is the point of a reload.
	logins, err := n.loadCredentials(cfg.Credentials)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.logins = logins
	announces := mergeAnnounces(n.announces, n.fileAnnounces, cfg.Announce)
	n.fileAnnounces = slices.Clone(cfg.Announce)
	// Keep a check result only where the service, its target and its
	// check stay the same. The checks compare as run (no entry is TCP):
	// the checker keeps a target whose check is the same and reports no
	// new result for it, so a result dropped here would hold the service
	// back until its state next flipped.
	checks := byName(cfg.Checks)
	kept := map[string]bool{}
	for _, a := range announces {
		name := a.Name.Lower().String()
		i := indexByName(n.announces, a.Name)
		if h, ok := n.healthy[name]; ok && i >= 0 && n.announces[i].Target() == a.Target() && checkOf(n.checks, a.Name) == checkOf(checks, a.Name) {
			kept[name] = h
		}
	}
	n.healthy = kept
	n.announces = announces
	n.forwards = slices.Clone(cfg.Forward)
	n.balance = byName(cfg.Balance)
	n.checks = checks
	n.mu.Unlock()
	n.log.Info("reloaded", "announce", len(announces), "forward", len(cfg.Forward))
	n.publish()
	var static []string
	old := n.cfg
	rotated, keyErr := n.rotateKeys(cfg.Keys)
	if !rotated && keyErr == nil {
		static = append(static, "key")
	}
	for _, d := range []struct {
		name    string
		changed bool
	}{
		{"node", cfg.Node != "" && cfg.Node != n.name},
		{"cluster", cfg.Cluster != old.Cluster},
		{"iface", !slices.Equal(cfg.Interfaces, old.Interfaces)},
		{"bind", cfg.Bind != old.Bind},
		{"gossip-port", cfg.GossipPort != old.GossipPort},
		{"data-port", cfg.DataPort != old.DataPort},
		{"http", cfg.HTTP != old.HTTP},
		// The hosts block and the DNS server follow the forwarded names
		// after a reload, but their file and address are opened at start.
		{"hosts", cfg.HostsFile != old.HostsFile},
		{"dns", cfg.DNS != old.DNS},
		{"socket", cfg.Socket != old.Socket},
		{"no-mdns", cfg.NoMDNS != old.NoMDNS},
		{"join", !slices.Equal(cfg.Join, old.Join)},
		{"upstream", !slices.Equal(cfg.Upstream, old.Upstream)},
		{"resolver", !slices.Equal(cfg.Resolvers, old.Resolvers)},
		{"check-interval", cfg.CheckInterval != old.CheckInterval || cfg.CheckTimeout != old.CheckTimeout},
		{"tls-ca", cfg.TLSCA != old.TLSCA},
		{"tls-cert", cfg.TLSCert != old.TLSCert},
		{"tls-key", cfg.TLSKey != old.TLSKey},
		{"dial-timeout", cfg.DialTimeout != old.DialTimeout},
		{"drain-timeout", cfg.DrainTimeout != old.DrainTimeout},
		{"idle-timeout", cfg.IdleTimeout != old.IdleTimeout},
		{"half-close-timeout", cfg.HalfCloseTimeout != old.HalfCloseTimeout},
		{"profile", cfg.Profile != old.Profile || cfg.ProbeInterval != old.ProbeInterval || cfg.ProbeTimeout != old.ProbeTimeout || cfg.SuspicionMult != old.SuspicionMult},
	} {
		if d.changed {
			static = append(static, d.name)
		}
	}
	var restart error
	if len(static) > 0 {
		restart = fmt.Errorf("mesh: reload: %s changed; that takes a restart, the old value stays", strings.Join(static, ", "))
	}
	return errors.Join(keyErr, restart)
}

// mergeAnnounces applies what changed between two versions of the
// configured announcements (prev, next: flags and --config file) to what
// the node announces now (cur), which run-time announce and drain calls may
// have changed. A service the configuration dropped is withdrawn; one it
// added or changed is announced as configured; one it left as it was keeps
// its run-time state, so a SIGHUP for an unrelated edit does not bring back
// a service drained for a migration. Services announced only at run time
// stay. Names compare case-insensitively.
func mergeAnnounces(cur, prev, next []Announce) []Announce {
	same := func(a, b Announce) bool {
		return a.Port == b.Port && a.Host == b.Host && a.TargetPort == b.TargetPort && max(a.Weight, 1) == max(b.Weight, 1)
	}
	out := slices.DeleteFunc(slices.Clone(cur), func(a Announce) bool {
		return indexByName(prev, a.Name) >= 0 && indexByName(next, a.Name) < 0
	})
	for _, a := range next {
		if i := indexByName(prev, a.Name); i >= 0 && same(prev[i], a) {
			continue // unchanged in the configuration: keep the run-time state
		}
		if i := indexByName(out, a.Name); i >= 0 {
			out[i] = a
		} else {
			out = append(out, a)
		}
	}
	return out
}

// indexByName returns the index of the announcement of service name in
// list (names compare case-insensitively, as service names do), or -1.
func indexByName(list []Announce, name svcname.Name) int {
	return slices.IndexFunc(list, func(x Announce) bool { return strings.EqualFold(x.Name.String(), name.String()) })
}

// rotateKeys makes keys the cluster keys of the running node: the first
// encrypts, all decrypt (see gossip.Cluster.SetKeys). It reports false,
// changing nothing, when the change would turn encryption on or off, which
// every peer must do at once and so takes a restart.
func (n *Node) rotateKeys(keys []string) (bool, error) {
	n.mu.Lock()
	cur := n.keys
	n.mu.Unlock()
	switch {
	case slices.Equal(keys, cur):
		return true, nil
	case len(keys) == 0 || len(cur) == 0:
		return false, nil
	}
	bs := make([][]byte, len(keys))
	for i, k := range keys {
		bs[i], _ = trust.ParseKey(k) // validated in Config.Validate
	}
	if err := n.cluster.SetKeys(bs); err != nil {
		return false, fmt.Errorf("mesh: reload: key: %w", err)
	}
	n.mu.Lock()
	n.keys = slices.Clone(keys)
	n.mu.Unlock()
	n.log.Info("cluster keys replaced", "keys", len(keys))
	return true, nil
}

// syncChecks makes the health checker follow the announcements, and takes
// from it the result of a target it kept while this node had dropped that
// result.
//
// The checker reports a target's first result and then only flips, and
// Set keeps a target whose address and check did not change. So a result
// dropped while the target stays (a withdraw and an announce of the same
// service and target that ran at once, both publishing after both
// changed the state) would never be reported again, and the service would
// be held back as pending for good. The checker knows that result: it is
// the one for the target announced now.
func (n *Node) syncChecks() {
	v := n.view()
	var ts []health.Target
	for _, a := range v.announces {
		if c := v.check(a.Name); c.Kind != health.KindNone {
			ts = append(ts, health.Target{Name: a.Name.Lower(), Addr: a.Target(), Check: c})
		}
	}
	n.checker.Set(ts)
	st := n.checker.Status()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range st {
		name := r.Name.String()
		if _, have := n.healthy[name]; have || !r.Known {
			continue
		}
		// Only for the target announced now: one that changed since the
		// view above gets its own first result.
		if i := indexByName(n.announces, r.Name); i >= 0 && n.announces[i].Target() == r.Addr && checkOf(n.checks, r.Name).String() == r.Check {
			n.healthy[name] = r.Healthy
		}
	}
}

// onHealth is the checker's callback: a service's check flipped (or gave
// its first result).
func (n *Node) onHealth(name svcname.Name, healthy bool, err error) {
	n.mu.Lock()
	if indexByName(n.announces, name) < 0 {
		n.mu.Unlock()
		return // withdrawn meanwhile
	}
	n.healthy[name.String()] = healthy
	n.mu.Unlock()
	n.publish()
}

// publish tells gossip and mDNS what this node hosts now and wakes the
// reconcile loop. It holds no lock while it calls them.
func (n *Node) publish() {
	// One publish at a time: health callbacks, upstream updates and API
	// calls publish concurrently, and an older view must not overwrite a
	// newer one. Nothing here blocks: the calls only hand over state.
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	n.syncChecks()
	v := n.view()
	ls := v.services(n.name)
	n.cluster.SetServicesDown(gossipServices(ls), v.down())
	if n.disc != nil {
		n.disc.SetServices(announceServices(ls))
	}
	select {
	case n.kick <- struct{}{}:
	default: // a reconcile is already pending
	}
}

// lookupLocal tells the data port which targets serve a service that this
// node offers, in the order to try them. Only announced and upstream
// services are reachable: no open relay. An announced service that is not
// passing its check (failing, or waiting for its first check) is refused
// like a withdrawn one: it is not offered, and a peer that has not heard
// so yet then tries another instance at once.
func (n *Node) lookupLocal(name svcname.Name) ([]string, bool) {
	service := name.Lower().String()
	n.mu.Lock()
	for _, a := range n.announces {
		if strings.EqualFold(a.Name.String(), service) {
			ok := passing(n.checks, n.healthy, a.Name)
			n.mu.Unlock()
			if !ok {
				return nil, false
			}
			return []string{a.Target()}, true
		}
	}
	ts, ok := n.upTargets[service]
	n.mu.Unlock()
	if !ok || len(ts) == 0 {
		return nil, false
	}
	// A fresh priority-then-weight order per connection spreads load the
	// way RFC 2782 asks.
	ordered := upstream.Order(ts)
	out := make([]string, len(ordered))
	for i, t := range ordered {
		out[i] = t.Addr
	}
	return out, true
}

// down lists the announcements whose check failed (health "failing"), for
// gossip.Entry.Down: peers then see a health change, not a withdrawal. One
// still waiting for its first check is in neither list.
func (v localView) down() []gossip.Service {
	var out []gossip.Service
	for _, a := range v.announces {
		if v.health(a.Name) == "failing" {
			out = append(out, gossip.Service{Name: a.Name.Lower(), Port: a.Port, Weight: a.Weight})
		}
	}
	return out
}

func gossipServices(ls []localService) []gossip.Service {
	var out []gossip.Service
	for _, l := range ls {
		out = append(out, gossip.Service{Name: l.Name, Port: l.Port, Weight: l.Weight})
	}
	return out
}

func announceServices(ls []localService) []announce.Service {
	var out []announce.Service
	for _, l := range ls {
		out = append(out, announce.Service{Name: l.Name, Port: l.Port})
	}
	return out
}
