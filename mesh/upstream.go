package mesh

import (
	"context"
	"fmt"
	"strings"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/upstream"
)

// Upstream is a service outside the mesh that this node resolves through
// DNS and offers to the cluster like a service of its own.
type Upstream struct {
	Name svcname.Name  // RFC 6335 service name
	Port int           // client-facing port
	Spec upstream.Spec // where the targets come from
}

// String gives the upstream back in flag syntax.
func (u Upstream) String() string { return fmt.Sprintf("%s:%d=%s", u.Name, u.Port, u.Spec) }

// ParseUpstream parses NAME[:PORT]=SPEC, SPEC being srv:_svc._tcp.domain,
// dns:host:port or host:port. PORT defaults to the spec's port; an SRV
// record carries ports per target, so an srv upstream needs NAME:PORT.
func ParseUpstream(s string) (Upstream, error) {
	name, spec, ok := strings.Cut(s, "=")
	if !ok {
		return Upstream{}, fmt.Errorf("%q: want NAME[:PORT]=SPEC", s)
	}
	var u Upstream
	rawName, portStr, _ := strings.Cut(name, ":")
	var err error
	if u.Name, err = svcname.Parse(rawName); err != nil {
		return Upstream{}, fmt.Errorf("%q: %w", s, err)
	}
	if u.Spec, err = upstream.Parse(spec); err != nil {
		return Upstream{}, fmt.Errorf("%q: %w", s, err)
	}
	u.Port = u.Spec.Port
	if portStr != "" {
		if u.Port, err = parsePort(portStr); err != nil {
			return Upstream{}, fmt.Errorf("%q: port: %w", s, err)
		}
	}
	if u.Port == 0 {
		return Upstream{}, fmt.Errorf("%q: an srv upstream needs the client port: NAME:PORT=srv:...", s)
	}
	return u, nil
}

// watchUpstreams starts following every upstream's DNS records; targets
// land in n.upTargets and are published like announcements.
func (n *Node) watchUpstreams(ctx context.Context) {
	for _, u := range n.cfg.Upstream {
		n.resolver.Watch(ctx, u.Name.Lower(), u.Spec, n.onUpstream)
	}
}

// onUpstream is called by the resolver when an upstream's targets change.
func (n *Node) onUpstream(name svcname.Name, targets []upstream.Target) {
	n.mu.Lock()
	n.upTargets[name.String()] = targets
	n.mu.Unlock()
	addrs := make([]string, len(targets))
	for i, t := range targets {
		addrs[i] = t.Addr
	}
	n.log.Info("upstream resolved", "service", name, "backends", strings.Join(addrs, ","))
	n.publish()
}

// upstreamBackends turns resolved targets into direct backends, with the
// SRV priority and weight (as upstream.Order reads them) for the balancer.
func upstreamBackends(node string, ts []upstream.Target) []forward.Backend {
	out := make([]forward.Backend, 0, len(ts))
	for _, t := range ts {
		out = append(out, forward.Backend{Node: node, Addr: t.Addr, Weight: t.Share(), Priority: int(t.Priority)})
	}
	return out
}
