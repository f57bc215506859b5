package gossip

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate adapts a Cluster to memberlist's callbacks, so those methods stay
// off Cluster's exported API. memberlist calls them from its own goroutines,
// sometimes with its node lock held (the EventDelegate methods): they take
// c.mu briefly, never call back into memberlist, and never block.
type delegate struct {
	c *Cluster
}

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.NamedBroadcast   = (*broadcast)(nil)
)

// NodeMeta returns nothing: the catalog travels in broadcasts and push/pull
// state, because metadata is capped at memberlist.MetaMaxSize (512 bytes).
func (d *delegate) NodeMeta(limit int) []byte { return nil }

// NotifyMsg merges one broadcast record. memberlist may reuse b after the
// call; decodeRecord copies what it keeps.
func (d *delegate) NotifyMsg(b []byte) {
	r, err := decodeRecord(b)
	if err != nil {
		d.c.log.Debug("dropping malformed broadcast", "bytes", len(b), "err", err)
		return
	}
	d.c.merge([]record{r})
}

// GetBroadcasts hands memberlist the queued records that fit in limit.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.bcast.GetBroadcasts(overhead, limit)
}

// LocalState returns this node's view of the catalog for a push/pull.
func (d *delegate) LocalState(join bool) []byte {
	b, err := encodeState(d.c.pushState())
	if err != nil {
		d.c.log.Error("encoding push/pull state", "err", err)
		return nil
	}
	if len(b) > maxStateMsg {
		// Every push/pull hits this until the catalog shrinks.
		if ok, suppressed := d.c.logLimit.allow("state size", time.Now()); ok {
			d.c.log.Error("push/pull state exceeds the limit peers accept; catalog will not converge",
				"bytes", len(b), "limit", maxStateMsg, "suppressed", suppressed)
		}
	}
	return b
}

// MergeRemoteState merges a peer's push/pull state. memberlist calls it
// after it merged the peer's membership, so NotifyJoin has already run for
// the nodes listed.
func (d *delegate) MergeRemoteState(b []byte, join bool) {
	rs, err := decodeState(b)
	if err != nil {
		d.c.log.Debug("dropping malformed push/pull state", "bytes", len(b), "join", join, "err", err)
		return
	}
	d.c.merge(rs)
}

// NotifyJoin records n as alive. memberlist calls it when a node becomes
// alive, also when a dead node comes back from a new address. Called with
// memberlist's node lock held.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	d.c.memberUp(n.Name, n.Addr.String(), int(n.Port))
}

// NotifyUpdate does nothing: memberlist calls it only when an alive node's
// metadata changes, and NodeMeta is always empty. (It rejects an address
// change of an alive node as a conflict.)
func (d *delegate) NotifyUpdate(n *memberlist.Node) {}

// NotifyLeave records n as dead or left. Called with memberlist's node lock
// held.
//
// n.State cannot tell the two apart: memberlist v0.7.0 keeps the state in
// nodeState.State, which shadows the embedded Node.State, and hands out
// &nodeState.Node, whose State is never set (always StateAlive). So
// "left" comes from the record the node broadcast in Leave.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.c.memberDown(n.Name)
}

// NotifyConflict is called when an alive message names a known node at
// another address. memberlist then keeps the node it knew and ignores the
// message. Only a conflict over this node's own name concerns us: another
// live node claims it (or this node claims a live node's name). Called with
// memberlist's node lock held.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name != d.c.cfg.NodeName {
		return // two other nodes; memberlist logs it
	}
	d.c.nameConflict(Member{Name: other.Name, Addr: other.Addr.String(), Port: int(other.Port), State: stateAlive})
}

// broadcast is one queued record. Named by node, so a newer record for the
// same node replaces an older one still in the queue; records are only
// queued when they are newer than what this node had, so the replacement is
// always an upgrade.
type broadcast struct {
	node string
	msg  []byte
}

func (b *broadcast) Name() string    { return b.node }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.node
}
