package mesh

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ambassador-mesh/ambassador/announce"
	"github.com/ambassador-mesh/ambassador/gossip"
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
}

func (n *Node) view() localView {
	n.mu.Lock()
	defer n.mu.Unlock()
	return localView{announces: slices.Clone(n.announces), forwards: slices.Clone(n.forwards), balance: maps.Clone(n.balance)}
}

// Announce adds a service to those this node hosts, or replaces the one of
// the same name, and tells the cluster and mDNS at once. Safe for
// concurrent use; it does not block on the network.
func (n *Node) Announce(a Announce) error {
	if _, err := ParseAnnounce(a.String()); err != nil {
		return fmt.Errorf("mesh: announce: %w", err)
	}
	n.mu.Lock()
	i := slices.IndexFunc(n.announces, func(x Announce) bool { return strings.EqualFold(x.Name, a.Name) })
	if i >= 0 {
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
func (n *Node) Withdraw(name string) error {
	n.mu.Lock()
	i := slices.IndexFunc(n.announces, func(x Announce) bool { return strings.EqualFold(x.Name, name) })
	if i >= 0 {
		n.announces = slices.Delete(n.announces, i, i+1)
	}
	n.mu.Unlock()
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrNotAnnounced, name)
	}
	n.log.Info("withdrawn", "service", name)
	n.publish()
	return nil
}

// Reload replaces what can change at run time (announcements, forwards
// and balance policies) with cfg's, as SIGHUP does. Settings that need a restart
// (ports, names, interfaces, profile) are compared and reported in the
// returned error, and otherwise ignored.
func (n *Node) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	n.announces = slices.Clone(cfg.Announce)
	n.forwards = slices.Clone(cfg.Forward)
	n.balance = maps.Clone(cfg.Balance)
	n.mu.Unlock()
	n.log.Info("reloaded", "announce", len(cfg.Announce), "forward", len(cfg.Forward))
	n.publish()
	var static []string
	old := n.cfg
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
		{"no-mdns", cfg.NoMDNS != old.NoMDNS},
		{"profile", cfg.Profile != old.Profile || cfg.ProbeInterval != old.ProbeInterval || cfg.ProbeTimeout != old.ProbeTimeout || cfg.SuspicionMult != old.SuspicionMult},
	} {
		if d.changed {
			static = append(static, d.name)
		}
	}
	if len(static) > 0 {
		return fmt.Errorf("mesh: reload: %s changed; that takes a restart, the old value stays", strings.Join(static, ", "))
	}
	return nil
}

// publish tells gossip and mDNS what this node hosts now and wakes the
// reconcile loop. It holds no lock while it calls them.
func (n *Node) publish() {
	v := n.view()
	n.cluster.SetServices(gossipServices(v.announces))
	if n.disc != nil {
		n.disc.SetServices(announceServices(v.announces))
	}
	select {
	case n.kick <- struct{}{}:
	default: // a reconcile is already pending
	}
}

// lookupLocal tells the data port which targets serve a service that this
// node announces, in the order to try them. Only announced services are
// reachable: no open relay.
func (n *Node) lookupLocal(service string) ([]string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range n.announces {
		if strings.EqualFold(a.Name, service) {
			return []string{a.Target()}, true
		}
	}
	return nil, false
}

func gossipServices(as []Announce) []gossip.Service {
	var out []gossip.Service
	for _, a := range as {
		out = append(out, gossip.Service{Name: strings.ToLower(a.Name), Port: a.Port})
	}
	return out
}

func announceServices(as []Announce) []announce.Service {
	var out []announce.Service
	for _, a := range as {
		out = append(out, announce.Service{Name: strings.ToLower(a.Name), Port: a.Port})
	}
	return out
}
