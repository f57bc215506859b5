// The reconcile loop: the catalog becomes routes, listeners and names.

package mesh

import (
	"context"
	"time"
)

// reconcileLoop keeps the listeners in line with the catalog. It also runs
// on a timer: every reconcileTick while something waits for time rather
// than for a change (a port that was busy is retried, a held-back peer
// comes due, a dead member is forgotten), and every steadyTick otherwise.
func (n *Node) reconcileLoop(ctx context.Context) {
	tick := reconcileTick
	t := time.NewTicker(tick)
	defer t.Stop()
	lastMembers := 0
	defer n.events.close() // ends the event streams before the status API stops
	var last time.Time
	for {
		last = time.Now()
		v := n.view()
		cat := n.cluster.Catalog() // one copy for both: half a reconcile's cost was copying it twice
		rs, hosts, _ := plan(n.name, cat, v.services(n.name), v.announces, v.forwards, v.balance, v.logins)
		n.proxy.Update(rs)
		n.names.Set(hosts)
		steady := n.noteChanges(cat)
		for _, a := range n.gate.take(time.Now(), !n.joinedCluster(), n.cluster.Known) {
			n.sendPeer(a) // discovered peers held back that gossip did not bring in
		}
		want := reconcileTick
		if steady && !n.gate.holding() {
			want = steadyTick
		}
		if want != tick {
			tick = want
			t.Reset(tick)
		}
		if m := n.cluster.NumMembers(); m != lastMembers {
			n.log.Info("members changed", "members", m)
			lastMembers = m
			if n.disc != nil {
				// Gossip knows the peers: mDNS need not keep asking.
				n.disc.SetQuiet(m > 1)
				n.disc.SetMembers(m)
			}
		}
		// Changed and kick are 1-buffered: however many changes arrive
		// while a reconcile runs (a forming cluster reports one per member
		// and record), they cost one more reconcile, which reads the
		// latest catalog. A cluster change right after a reconcile waits
		// out reconcileGap (see reconcileDelay); a local change (kick)
		// never waits.
		select {
		case <-ctx.Done():
			return
		case <-n.cluster.Changed():
			if d := reconcileDelay(last, time.Now()); d > 0 {
				w := time.NewTimer(d)
				select {
				case <-ctx.Done():
					w.Stop()
					return
				case <-n.kick:
				case <-w.C:
				}
				w.Stop()
			}
		case <-n.kick:
		case <-t.C:
		}
	}
}

// The reconcile loop's timer: reconcileTick while it has something to
// retry or a held-back peer, steadyTick otherwise. A steady reconcile of a
// 100-node cluster copies and walks the whole catalog and member list
// (about 0.5 ms of CPU); every 5 s it was a twentieth of an idle node's
// CPU (profile of a 100-host lab). Changes wake the loop at once anyway.
const (
	reconcileTick = 5 * time.Second
	steadyTick    = time.Minute
)

// reconcileGap is the least time between the starts of two reconciles
// that cluster changes cause. A reconcile reads the whole catalog and
// member list, plans routes and diffs the events (a profile of 100 nodes
// starting on two cores: half of it in noteChanges), and a forming or
// flapping cluster of N nodes reports changes many times a second on
// every node. A change after a quiet spell is reconciled at once, so a
// withdrawn service's listener still closes without delay.
const reconcileGap = 50 * time.Millisecond

// reconcileDelay is how long a cluster change at now waits when the last
// reconcile started at last.
func reconcileDelay(last, now time.Time) time.Duration {
	return max(0, reconcileGap-now.Sub(last))
}
