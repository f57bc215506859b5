package gossip

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
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

// TestLeaveWithServicesDown checks that a node leaving while many of its
// services fail their checks is reported "left", not "dead": its left
// record must fit in a gossip packet, whatever it announced.
func TestLeaveWithServicesDown(t *testing.T) {
	a := newNode(t, "a", "test", 7001)
	b := newNode(t, "b", "test", 7002)
	var down []Service
	for i := range 60 {
		down = append(down, Service{Name: svcname.Must(fmt.Sprintf("svc%03d", i)), Port: 10000 + i})
	}
	b.SetServicesDown(nil, down)
	join(t, b, a) // the record is too large to broadcast: the join brings it
	waitCatalogs(t, []*Cluster{a}, []Entry{
		{Node: "a", Addr: "127.0.0.1", DataPort: 7001},
		{Node: "b", Addr: "127.0.0.1", DataPort: 7002, Down: down},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := b.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := b.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var seen []string // b's states on a, in order
	waitFor(t, "a sees b leave", func() error {
		got := memberState(a, "b")
		if len(seen) == 0 || seen[len(seen)-1] != got {
			seen = append(seen, got)
		}
		if got != stateLeft {
			return fmt.Errorf("member b: got states %q, want %q", seen, stateLeft)
		}
		return nil
	})
}
