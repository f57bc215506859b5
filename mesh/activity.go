package mesh

import "github.com/ambassador-mesh/ambassador/forward"

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

// openElsewhere counts, by service, the connections in conns (the proxy's
// open connections) whose listener is not in listeners (the proxy's
// Status, taken first): a listener closed or moved since they were
// accepted, to another address on a reload or a route change, while they
// run on. The listeners' Active counts only their own connections, so
// the status, the metrics and the connections view add these to the
// service's, and count them until they close.
//
// A listener is matched by service and address. One that moved away and
// back is a new listener there, and the connections of the old one at
// that address are not told apart from its own: they go uncounted until
// they close, as every moved one did before.
func openElsewhere(listeners []forward.ListenerStatus, conns []forward.ConnStatus) map[string]uint64 {
	type key struct{ service, listen string }
	here := make(map[key]bool, len(listeners))
	for _, ls := range listeners {
		here[key{ls.Service, ls.Listen}] = true
	}
	var out map[string]uint64
	for _, c := range conns {
		if here[key{c.Service, c.Listen}] {
			continue
		}
		if out == nil {
			out = map[string]uint64{}
		}
		out[c.Service]++
	}
	return out
}
