package mesh

// Activity returns how many connections this node's data plane has
// accepted so far, on its listeners and its data port together, and how
// many of them are open now: for a caller that sizes the process to its
// load (main's GOMAXPROCS governor, issue 10). Safe for concurrent use.
//
// The listeners' counters cover the listeners open now. A connection
// outlives its listener (a withdrawn service, a listener moved to a
// loopback address of its own when a second service came to its port),
// so when they count none open the open connections are counted one by
// one; that list is built only then, as it costs an allocation per
// connection.
func (n *Node) Activity() (accepted, open uint64) {
	for _, ls := range n.proxy.Status() {
		accepted += ls.Accepted
		open += ls.Active
	}
	if open == 0 {
		open = uint64(len(n.proxy.Connections()))
	}
	ds := n.data.Stats()
	return accepted + ds.Accepted, open + ds.Active
}
