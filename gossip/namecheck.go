package gossip

import (
	"context"
	"fmt"
	"net"
	"time"
)

// confirmTries is how many pings ConfirmName sends before it concludes that
// nothing answers: one lost UDP datagram must not decide.
const confirmTries = 3

// legacyNameWindow is how long after its start a node gives way to a
// namesake that sends no start time (see holdsName). An older release
// without start times gave way only within its own first 30 s; doing the
// same keeps such a newcomer from stopping a node that has run for a while,
// which would otherwise be the one to stop, as both would believe the
// other holds the name.
const legacyNameWindow = 30 * time.Second

// ConfirmName reports whether a live node answering to this node's name is
// at m's address, as Conflicts reported it: it sends memberlist pings that
// name this node's name to m.Addr:m.Port, up to three, each bounded by the
// probe timeout, and returns nil on the first acknowledgement. memberlist
// drops a ping that names a node other than itself, and (with Keys) one it
// cannot decrypt, so an acknowledgement means a member of this cluster
// holding this name runs there now. A claim that gossip still carries about
// a namesake that has since stopped (a crashed node restarted at another
// address) gets an error instead, so a caller can tell it from a real
// twin. It blocks for at most about three probe timeouts; ctx ends it
// between pings. Safe for concurrent use.
func (c *Cluster) ConfirmName(ctx context.Context, m Member) error {
	c.lifeMu.Lock()
	ml, closed := c.ml, c.closed
	c.lifeMu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("gossip: confirm name: %w", net.ErrClosed)
	case ml == nil:
		return fmt.Errorf("gossip: confirm name: not started")
	}
	ip := net.ParseIP(m.Addr)
	if ip == nil || m.Port < 1 || m.Port > 65535 {
		return fmt.Errorf("gossip: confirm name %q: address %q port %d is not an IP and port", c.cfg.NodeName, m.Addr, m.Port)
	}
	addr := &net.UDPAddr{IP: ip, Port: m.Port}
	if c.isOwnAddr(ip, m.Port) {
		// This process would answer its own ping: a stale record of this
		// very node under an address it no longer advertises (a restart
		// with another --advertise on a multi-homed host). Obeying it
		// would stop the only holder of the name.
		return fmt.Errorf("gossip: confirm name %q at %s: that is this node's own gossip socket", c.cfg.NodeName, addr)
	}
	var err error
	for range confirmTries {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("gossip: confirm name %q at %s: %w", c.cfg.NodeName, addr, cerr)
		}
		if _, err = ml.Ping(c.cfg.NodeName, addr); err == nil {
			return nil
		}
	}
	return fmt.Errorf("gossip: confirm name %q at %s: no answer to %d pings: %w", c.cfg.NodeName, addr, confirmTries, err)
}

// isOwnAddr reports whether ip:port reaches this node's own gossip
// socket: the port is this node's and ip is the address it binds, or,
// bound to every interface, any address of this host's interfaces.
func (c *Cluster) isOwnAddr(ip net.IP, port int) bool {
	if port != c.GossipPort() {
		return false
	}
	if b := net.ParseIP(c.cfg.BindAddr); b != nil && !b.IsUnspecified() {
		return b.Equal(ip)
	}
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
