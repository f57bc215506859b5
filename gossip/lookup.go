package gossip

// Fingerprint returns the data-plane fingerprint of node as Catalog would
// list it: "" when node is not in the catalog (not alive, left, unknown)
// or published none. Unlike Catalog it copies nothing, for the data path,
// which asks on every connection.
func (c *Cluster) Fingerprint(node string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if node == c.self.Node {
		if c.self.Left {
			return ""
		}
		return c.self.Fingerprint
	}
	if s, ok := c.records[node]; ok && c.listedLocked(node, s) {
		return s.rec.Fingerprint
	}
	return ""
}

// HasFingerprint reports whether fp is the non-empty fingerprint of an
// entry Catalog would list. Unlike Catalog it copies nothing.
func (c *Cluster) HasFingerprint(fp string) bool {
	if fp == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.self.Left && c.self.Fingerprint == fp {
		return true
	}
	for name, s := range c.records {
		if s.rec.Fingerprint == fp && c.listedLocked(name, s) {
			return true
		}
	}
	return false
}

// listedLocked reports whether the record s of node name is one Catalog
// lists: its member is alive and it has not left.
func (c *Cluster) listedLocked(name string, s *stored) bool {
	m, ok := c.members[name]
	return ok && m.State == stateAlive && !s.rec.Left
}
