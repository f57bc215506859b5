package gossip

import (
	"sync"
	"testing"
)

// TestReadvertiseConcurrent flips whether this node serves from several
// goroutines at once while a peer is alive, so that several metadata
// re-advertisements overlap. memberlist's UpdateNode reads the local
// node's address without its lock while another UpdateNode's aliveNode
// writes it; run with -race this fails unless re-advertisements are
// serialised (seen in CI as a race in the lab's race-built binary).
func TestReadvertiseConcurrent(t *testing.T) {
	a := newNode(t, "a", "readvertise", 7001)
	b := newNode(t, "b", "readvertise", 7002)
	join(t, b, a)

	svcs := []Service{{Name: "redis", Port: 6379}}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				if (i+g)%2 == 0 {
					a.SetServices(svcs)
				} else {
					a.SetServices(nil)
				}
			}
		})
	}
	wg.Wait()
	a.SetServices(svcs)
	waitCatalogs(t, []*Cluster{a, b}, []Entry{
		{Node: "a", Addr: "127.0.0.1", DataPort: 7001, Services: svcs},
		{Node: "b", Addr: "127.0.0.1", DataPort: 7002},
	})
}
