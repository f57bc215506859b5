package gossip

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// Suspects, and the crashed process that need not wait for the timeout.
//
// memberlist declares a node that stops answering probes suspect, and dead
// only after the suspicion timeout (4×ProbeInterval×log10(n), up to six
// times that without confirmations: about 7s at 25 nodes with the LAN
// timers). Shorter timers dropped a crashed node faster but marked busy,
// live nodes dead by the thousand at 100 hosts (issue 10).
//
// Most crashes of a node on a live host are its process dying (SIGKILL, a
// panic, the OOM killer): the host's kernel then refuses connections to
// the gossip port at once, while a node that is merely slow still has its
// listening socket, and the kernel completes the handshake for it. So once
// a member turns suspect, each node dials the member's gossip port itself
// (confirmSuspect): refused means the process is gone, and the member's
// services leave this node's catalog at once (Catalog hides them, Changed
// fires) while memberlist finishes its own timeout; it is still listed
// "suspect" in Members. An accepted connection, a timeout (the whole host
// or its link down) or any other error change nothing. A member memberlist
// sees alive again (it refuted the suspicion) gets its services back on the
// next scan. The decision is local to each node: nothing is gossiped, so a
// wrong "refused" (say, a firewall that rejects) costs only that node's
// routes to that member, and only while memberlist suspects it anyway.

// scanSuspects reads memberlist's node table (see nodetable.go) and
// updates the members' suspect flags; a member that has just turned
// suspect gets a confirmSuspect dial. It is called from GetBroadcasts,
// which memberlist calls on every gossip tick and piggybacked message, so
// it adds no timer and no wake-up of its own; it scans at most once per
// c.scanEvery and never waits for memberlist's lock.
func (c *Cluster) scanSuspects(now time.Time) {
	t := c.table.Load()
	if t == nil {
		return
	}
	last := c.lastScan.Load()
	if now.UnixNano()-last < int64(c.scanEvery) || !c.lastScan.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	views, ok := t.read(make([]nodeView, 0, 8), true)
	if !ok {
		return
	}
	var suspects []string
	for _, v := range views {
		if v.state == memberlist.StateSuspect {
			suspects = append(suspects, v.name)
		}
	}
	c.applySuspects(suspects)
}

// applySuspects sets each alive member's suspect flag from suspects, the
// names memberlist holds suspect, clears the refused mark of members no
// longer suspect, and starts a confirmSuspect for each new suspect.
func (c *Cluster) applySuspects(suspects []string) {
	type target struct {
		name string
		addr string
	}
	var dial []target
	var back []string
	changed := false
	c.mu.Lock()
	for name, m := range c.members {
		if name == c.self.Node || m.State != stateAlive {
			continue
		}
		want := slices.Contains(suspects, name)
		if want == m.suspect {
			continue
		}
		changed = true
		m.suspect = want
		if want {
			dial = append(dial, target{name, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))})
		} else if m.refused {
			m.refused = false
			back = append(back, name)
		}
	}
	c.mu.Unlock()

	for _, name := range back {
		c.log.Info("member alive again; its services are back", "peer", name)
	}
	for _, d := range dial {
		c.log.Debug("member suspect; confirming with a connection to its gossip port", "peer", d.name, "addr", d.addr)
		c.lifeMu.Lock()
		if !c.closed {
			c.checks.Go(func() { c.confirmSuspect(d.name, d.addr) })
		}
		c.lifeMu.Unlock()
	}
	if changed {
		c.notify()
	}
}

// confirmSuspect dials addr, the gossip port of the suspect member name.
// Refused: the member is marked refused, so Catalog hides its services.
// It writes memberlist's stream label before it closes, so the member, if
// it is alive after all, reads a clean end of stream and logs nothing. It
// gives up after the probe timeout or on Shutdown.
func (c *Cluster) confirmSuspect(name, addr string) {
	ctx, cancel := context.WithTimeout(c.stopCtx, c.cfg.Memberlist.ProbeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		_ = conn.SetWriteDeadline(time.Now().Add(c.cfg.Memberlist.ProbeTimeout))
		_ = memberlist.AddLabelHeaderToStream(conn, c.cfg.Cluster)
		_ = conn.Close()
		c.log.Debug("suspect member accepts connections; leaving it to memberlist", "peer", name)
		return
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		c.log.Debug("suspect member did not answer a connection; leaving it to memberlist", "peer", name, "err", err)
		return
	}
	c.mu.Lock()
	m, ok := c.members[name]
	hide := ok && m.State == stateAlive && m.suspect && !m.refused
	if hide {
		m.refused = true
	}
	c.mu.Unlock()
	if hide {
		c.log.Info("suspect member refuses connections on its gossip port: its process is gone; hiding its services", "peer", name, "addr", addr)
		c.notify()
	}
}
