package gossip

// pushSelf sends r, this node's own record just changed by SetServices,
// straight to every alive member, one UDP packet each, besides queueing it
// for gossip. Gossip alone reaches the last of N nodes after about
// log3(N) rounds of GossipInterval (300ms for 25 nodes at 100ms); the
// direct packet makes a new announcement usable everywhere within a round
// trip. It costs N packets per change of this node's services, which
// operators make by hand, and a lost packet is covered by the queued
// broadcast. Records too large for one gossip packet are left to push/pull
// as before. Does nothing before Start or after Leave.
func (c *Cluster) pushSelf(r record) {
	b, err := encodeRecord(r)
	if err != nil || len(b) > c.maxBcast {
		return // queue logged it
	}
	c.sendToMembers(b, "", "push record")
}

// sendToMembers sends b best-effort (one UDP packet) to every member this
// node lists but itself and skip ("" skips no one); what names the
// message in the debug line of a failed send. Does nothing before Start or
// after Leave.
func (c *Cluster) sendToMembers(b []byte, skip, what string) {
	c.lifeMu.Lock()
	ml := c.ml
	if c.left || c.closed {
		ml = nil
	}
	c.lifeMu.Unlock()
	if ml == nil {
		return
	}
	self := ml.LocalNode().Name
	for _, n := range ml.Members() {
		if n.Name == self || n.Name == skip { // member names are never empty
			continue
		}
		if err := ml.SendBestEffort(n, b); err != nil {
			c.log.Debug(what, "peer", n.Name, "err", err)
		}
	}
}
