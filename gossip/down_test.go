package gossip

import (
	"testing"
)

// TestServicesDownConverge checks that the services a node reports down
// reach every catalog in Entry.Down, apart from its Services, and that a
// name in both lists counts as up.
func TestServicesDownConverge(t *testing.T) {
	nodes, want := threeNodes(t)
	a := nodes[0]
	// db fails its check: it moves from Services to Down.
	a.SetServicesDown([]Service{{Name: "web", Port: 80}}, []Service{{Name: "db", Port: 5432, Weight: 2}})
	want[0].Services = []Service{{Name: "web", Port: 80}}
	want[0].Down = []Service{{Name: "db", Port: 5432, Weight: 2}}
	waitCatalogs(t, nodes, want)

	// The same lists again change nothing: no new version to gossip.
	version := func() uint64 { return a.Catalog()[0].Version }
	before := version()
	a.SetServicesDown([]Service{{Name: "web", Port: 80}}, []Service{{Name: "db", Port: 5432, Weight: 2}})
	if got := version(); got != before {
		t.Errorf("version after setting the same services: got %d, want %d", got, before)
	}

	// db passes again; web listed both up and down is up.
	a.SetServicesDown([]Service{{Name: "web", Port: 80}, {Name: "db", Port: 5432, Weight: 2}}, []Service{{Name: "web", Port: 80}})
	want[0].Services = []Service{{Name: "db", Port: 5432, Weight: 2}, {Name: "web", Port: 80}}
	want[0].Down = nil
	waitCatalogs(t, nodes, want)
}
