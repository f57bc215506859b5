package mesh

import (
	"maps"
	"slices"
	"testing"

	"github.com/ambassador-mesh/ambassador/gossip"
)

// TestLiveAddrs: the join loop reads the member list only when it has
// candidates to check, and then keeps alive and suspect members' gossip
// addresses.
func TestLiveAddrs(t *testing.T) {
	list := []gossip.Member{
		{Name: "a", Addr: "10.0.0.1", Port: 7946, State: "alive"},
		{Name: "b", Addr: "10.0.0.2", Port: 7946, State: "suspect"},
		{Name: "c", Addr: "10.0.0.3", Port: 7946, State: "dead"},
		{Name: "d", Addr: "fe80::1", Port: 7000, State: "left"},
		{Name: "e", Addr: "fe80::2", Port: 7000, State: "alive"},
	}
	for _, tc := range []struct {
		name  string
		need  bool
		calls int
		want  []string
	}{
		{"no candidates: members not read", false, 0, nil},
		{"candidates", true, 1, []string{"10.0.0.1:7946", "10.0.0.2:7946", "[fe80::2]:7000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			got := liveAddrs(tc.need, func() []gossip.Member { calls++; return list })
			if calls != tc.calls {
				t.Errorf("members read %d times, want %d", calls, tc.calls)
			}
			if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, tc.want) {
				t.Errorf("got %v, want %v", keys, tc.want)
			}
		})
	}
}
