package gossip

// Every node passes each record it learns on to a few others, several
// times (RetransmitMult × log10 N), so a node receives each record about
// that many times: at 400 simulated nodes, decoding the same JSON again
// and again was an eighth of all CPU and much of the garbage. A stored
// record remembers the broadcast it arrived in, and a byte-for-byte copy
// of that broadcast is dropped before decoding. merge would have dropped
// it anyway: the same bytes carry the same version, which is never newer
// than the stored one.

// seenBroadcast reports whether b is the broadcast of a record this node
// stores. A lookup with string(b) as the key does not copy b.
func (c *Cluster) seenBroadcast(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.raw[string(b)]
	return ok
}

// storeLocked stores s as its node's record, replacing the one before
// and the broadcast that carried it.
func (c *Cluster) storeLocked(s *stored) {
	name := s.rec.Node
	if old, ok := c.records[name]; ok && old.raw != "" {
		delete(c.raw, old.raw)
	}
	c.records[name] = s
	if s.raw != "" {
		c.raw[s.raw] = name
	}
}

// rememberLocked notes raw as a broadcast of s, which came without one
// (by push/pull): a record learnt in a push/pull is decoded once more when
// its first broadcast copy arrives, not every time.
func (c *Cluster) rememberLocked(s *stored, raw []byte) {
	s.raw = string(raw)
	c.raw[s.raw] = s.rec.Node
}

// forgetLocked removes name's record and its broadcast.
func (c *Cluster) forgetLocked(name string) {
	if old, ok := c.records[name]; ok && old.raw != "" {
		delete(c.raw, old.raw)
	}
	delete(c.records, name)
}
