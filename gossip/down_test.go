package gossip

import (
	"slices"
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

// TestOwnRecordNamesEachServiceOnce checks that SetServicesDown keeps one
// spelling of a name that is listed twice in two cases (names compare
// case-insensitively, svcname): peers refuse a record that names one
// service twice, and with it the node's whole push/pull state.
func TestOwnRecordNamesEachServiceOnce(t *testing.T) {
	tests := []struct {
		name     string
		up, down []Service
		wantUp   []Service
		wantDown []Service
	}{
		{name: "twice up", up: []Service{{Name: "web", Port: 80}, {Name: "WEB", Port: 81}},
			wantUp: []Service{{Name: "web", Port: 80}}},
		{name: "twice down", down: []Service{{Name: "Db", Port: 1}, {Name: "dB", Port: 2}},
			wantDown: []Service{{Name: "Db", Port: 1}}},
		{name: "up and down", up: []Service{{Name: "web", Port: 80}}, down: []Service{{Name: "Web", Port: 80}},
			wantUp: []Service{{Name: "web", Port: 80}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newOffline(t, "a")
			c.SetServicesDown(tc.up, tc.down)
			c.mu.Lock()
			self := c.self.clone()
			c.mu.Unlock()
			if !slices.Equal(self.Services, tc.wantUp) || !slices.Equal(self.Down, tc.wantDown) {
				t.Errorf("own record: got services %+v, down %+v; want %+v, %+v", self.Services, self.Down, tc.wantUp, tc.wantDown)
			}
			if _, err := decodeRecord(mustEncodeRecord(t, self)); err != nil {
				t.Errorf("a peer decoding the own record: got %v, want nil", err)
			}
		})
	}
}
