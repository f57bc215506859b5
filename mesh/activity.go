package mesh

// Activity returns how many connections this node's data plane has
// accepted so far, on its listeners and its data port together, and how
// many of them are open now: for a caller that sizes the process to its
// load (main's GOMAXPROCS governor, issue 10). Safe for concurrent use.
func (n *Node) Activity() (accepted, open uint64) {
	for _, ls := range n.proxy.Status() {
		accepted += ls.Accepted
		open += ls.Active
	}
	ds := n.data.Stats()
	return accepted + ds.Accepted, open + ds.Active
}
