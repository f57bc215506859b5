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
