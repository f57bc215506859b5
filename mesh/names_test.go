package mesh

import (
	"net/netip"
	"testing"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/gossip"
)

// TestPlanSharedPort: two services on one port each get their own
// loopback address, nobody gets 127.0.0.1 on that port, a service alone on
// its port keeps 127.0.0.1, and the hosts entries say which is where.
func TestPlanSharedPort(t *testing.T) {
	catalog := []gossip.Entry{
		{Node: "b", Addr: "10.0.0.2", DataPort: 7947, Services: []gossip.Service{{Name: "pg-b", Port: 5432}}},
		{Node: "a", Addr: "10.0.0.1", DataPort: 7947, Services: []gossip.Service{{Name: "pg-a", Port: 5432}, {Name: "redis", Port: 6379}}},
	}
	pgA := netip.AddrPortFrom(loopbackFor("pg-a", map[netip.Addr]bool{}), 5432).String()
	pgB := netip.AddrPortFrom(loopbackFor("pg-b", map[netip.Addr]bool{}), 5432).String()
	rs, hosts, _ := plan("self", catalog, nil, nil, nil, nil, nil)
	got := map[string]string{}
	for _, r := range rs {
		got[r.Service] = r.Listen
	}
	want := map[string]string{"pg-a": pgA, "pg-b": pgB, "redis": "127.0.0.1:6379"}
	if len(got) != len(want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("routes %v, want %v", got, want)
		}
	}
	if pgA == pgB {
		t.Fatalf("pg-a and pg-b share %s", pgA)
	}
	wantHosts := []named{
		{Name: "pg-a", At: netip.MustParseAddrPort(pgA)},
		{Name: "pg-b", At: netip.MustParseAddrPort(pgB)},
		{Name: "redis", At: netip.MustParseAddrPort("127.0.0.1:6379")},
	}
	if len(hosts) != len(wantHosts) {
		t.Fatalf("hosts %v, want %v", hosts, wantHosts)
	}
	for i := range wantHosts {
		if hosts[i] != wantHosts[i] {
			t.Fatalf("hosts %v, want %v", hosts, wantHosts)
		}
	}

	// The catalog's order does not matter, and alone on its port pg-a is
	// back on 127.0.0.1.
	rs2, _, _ := plan("self", []gossip.Entry{catalog[1], catalog[0]}, nil, nil, nil, nil, nil)
	if len(rs2) != 3 || rs2[0].Listen != rs[0].Listen || rs2[1].Listen != rs[1].Listen {
		t.Fatalf("order-dependent: %v vs %v", rs2, rs)
	}
	alone, _, _ := plan("self", catalog[1:], nil, nil, nil, nil, nil)
	for _, r := range alone {
		if r.Service == "pg-a" && r.Listen != "127.0.0.1:5432" {
			t.Fatalf("pg-a alone on 5432 listens on %s, want 127.0.0.1:5432", r.Listen)
		}
	}
}

// TestPlanForwardKeepsItsAddress: a --forward address is never moved; a
// service that clashes with it moves instead.
func TestPlanForwardKeepsItsAddress(t *testing.T) {
	catalog := []gossip.Entry{{Node: "a", Addr: "10.0.0.1", DataPort: 7947, Services: []gossip.Service{{Name: "pg-a", Port: 5432}, {Name: "pg-b", Port: 5432}}}}
	rs, hosts, _ := plan("self", catalog, nil, nil, []Forward{{Name: "pg-a", Listen: "127.0.0.1:5432"}, {Name: "pg-b"}}, nil, nil)
	if len(rs) != 2 || rs[0].Service != "pg-a" || rs[0].Listen != "127.0.0.1:5432" || rs[1].Listen == "127.0.0.1:5432" {
		t.Fatalf("routes %v", rs)
	}
	if hosts[1].At.String() != rs[1].Listen {
		t.Fatalf("hosts %v do not match routes %v", hosts, rs)
	}
}

// TestPlanOwnedPortStillNamed: a service that owns its port here gets no
// listener but is still named, at 127.0.0.1.
func TestPlanOwnedPortStillNamed(t *testing.T) {
	local := []localService{{Name: "pg", Port: 5432, Backends: []forward.Backend{{Node: "self", Addr: "127.0.0.1:5432"}}}}
	rs, hosts, _ := plan("self", nil, local, nil, nil, nil, nil)
	if len(rs) != 0 || len(hosts) != 1 || hosts[0] != (named{Name: "pg", At: netip.MustParseAddrPort("127.0.0.1:5432")}) {
		t.Fatalf("routes %v hosts %v", rs, hosts)
	}
}

func TestLoopbackFor(t *testing.T) {
	used := map[netip.Addr]bool{}
	seen := map[netip.Addr]string{}
	for i := range 5000 {
		name := "svc-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		a := loopbackFor(name, used)
		b := a.As4()
		if b[0] != 127 || b[1] == 0 || b[3] == 0 || b[3] == 255 {
			t.Fatalf("%s -> %s: outside the allowed range", name, a)
		}
		if other, dup := seen[a]; dup {
			t.Fatalf("%s and %s both got %s", name, other, a)
		}
		seen[a] = name
	}
	// Stable: the same name alone gets the same address, every time.
	if x, y := loopbackFor("pg-a", map[netip.Addr]bool{}), loopbackFor("pg-a", map[netip.Addr]bool{}); x != y {
		t.Fatalf("pg-a: %s then %s", x, y)
	}
	// Taken: the next candidate, still valid.
	first := loopbackFor("pg-a", map[netip.Addr]bool{})
	second := loopbackFor("pg-a", map[netip.Addr]bool{first: true})
	if second == first || second.As4()[1] == 0 {
		t.Fatalf("pg-a with %s taken: %s", first, second)
	}
}
