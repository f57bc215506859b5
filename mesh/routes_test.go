package mesh

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/gossip"
)

func TestRoutes(t *testing.T) {
	catalog := []gossip.Entry{
		{Node: "c", Addr: "10.0.0.3", DataPort: 7947, Services: []gossip.Service{{Name: "redis", Port: 6379}}},
		{Node: "a", Addr: "10.0.0.1", DataPort: 7947, Services: []gossip.Service{{Name: "redis", Port: 6379, Weight: 3}, {Name: "web", Port: 80}}},
		{Node: "self", Addr: "10.0.0.9", DataPort: 7947, Services: []gossip.Service{{Name: "pg", Port: 5432}}},
	}
	remoteRedis := []forward.Backend{
		{Node: "a", Addr: "10.0.0.1:7947", Service: "redis", Weight: 3},
		{Node: "c", Addr: "10.0.0.3:7947", Service: "redis"},
	}
	tests := []struct {
		name     string
		local    []localService
		own      []Announce
		forwards []Forward
		catalog  []gossip.Entry
		balance  map[string]string
		want     []forward.Route
	}{
		{
			name:    "every service on its port, peers in node order",
			catalog: catalog[:2],
			want: []forward.Route{
				{Service: "redis", Listen: "127.0.0.1:6379", Backends: remoteRedis},
				{Service: "web", Listen: "127.0.0.1:80", Backends: []forward.Backend{{Node: "a", Addr: "10.0.0.1:7947", Service: "web"}}},
			},
		},
		{
			name:     "forward limits and moves listeners",
			catalog:  catalog[:2],
			forwards: []Forward{{Name: "redis", Listen: "127.0.0.1:16379"}},
			want:     []forward.Route{{Service: "redis", Listen: "127.0.0.1:16379", Backends: remoteRedis}},
		},
		{
			name:     "a forwarded service not in the catalog gets no listener",
			catalog:  catalog[:2],
			forwards: []Forward{{Name: "mysql"}},
			want:     nil,
		},
		{
			name:    "own instance first, and skipped when it owns the port",
			catalog: catalog,
			local:   []localService{{Name: "pg", Port: 5432, Backends: []forward.Backend{{Node: "self", Addr: "127.0.0.1:5432"}}}},
			want: []forward.Route{
				{Service: "redis", Listen: "127.0.0.1:6379", Backends: remoteRedis},
				{Service: "web", Listen: "127.0.0.1:80", Backends: []forward.Backend{{Node: "a", Addr: "10.0.0.1:7947", Service: "web"}}},
			},
		},
		{
			// Its check fails (it is in own, not in local): the port is
			// still the service's, or a forwarder would answer its check.
			name:    "own instance that fails its check keeps its port",
			catalog: []gossip.Entry{{Node: "a", Addr: "10.0.0.1", DataPort: 7947, Services: []gossip.Service{{Name: "pg", Port: 5432}}}},
			own:     []Announce{{Name: "pg", Port: 5432, Host: "localhost", TargetPort: 5432}},
			want:    nil,
		},
		{
			name:    "own instance on another port that fails its check leaves the peers",
			catalog: []gossip.Entry{{Node: "a", Addr: "10.0.0.1", DataPort: 7947, Services: []gossip.Service{{Name: "pg", Port: 5432}}}},
			own:     []Announce{{Name: "pg", Port: 5432, Host: "127.0.0.1", TargetPort: 15432}},
			want:    []forward.Route{{Service: "pg", Listen: "127.0.0.1:5432", Backends: []forward.Backend{{Node: "a", Addr: "10.0.0.1:7947", Service: "pg"}}}},
		},
		{
			name:    "own instance on another port is forwarded to directly",
			catalog: catalog[:2],
			local:   []localService{{Name: "redis", Port: 6379, Backends: []forward.Backend{{Node: "self", Addr: "127.0.0.1:12345"}}}},
			want: []forward.Route{
				{Service: "redis", Listen: "127.0.0.1:6379", Backends: append([]forward.Backend{{Node: "self", Addr: "127.0.0.1:12345"}}, remoteRedis...)},
				{Service: "web", Listen: "127.0.0.1:80", Backends: []forward.Backend{{Node: "a", Addr: "10.0.0.1:7947", Service: "web"}}},
			},
		},
		{
			name:    "balance policy and local weight",
			catalog: catalog[:2],
			local:   []localService{{Name: "redis", Port: 6379, Backends: []forward.Backend{{Node: "self", Addr: "127.0.0.1:12345", Weight: 3}}}},
			balance: map[string]string{"redis": "first"},
			want: []forward.Route{
				{Service: "redis", Listen: "127.0.0.1:6379", Balance: "first", Backends: append([]forward.Backend{{Node: "self", Addr: "127.0.0.1:12345", Weight: 3}}, remoteRedis...)},
				{Service: "web", Listen: "127.0.0.1:80", Backends: []forward.Backend{{Node: "a", Addr: "10.0.0.1:7947", Service: "web"}}},
			},
		},
		{
			name:    "an upstream's targets are local backends",
			catalog: nil,
			local: []localService{{Name: "db", Port: 5432, Backends: []forward.Backend{
				{Node: "self", Addr: "10.9.0.1:5432", Weight: 10}, {Node: "self", Addr: "10.9.0.2:5432", Weight: 5}}}},
			want: []forward.Route{{Service: "db", Listen: "127.0.0.1:5432", Backends: []forward.Backend{
				{Node: "self", Addr: "10.9.0.1:5432", Weight: 10}, {Node: "self", Addr: "10.9.0.2:5432", Weight: 5}}}},
		},
		{
			name:    "empty catalog",
			catalog: nil,
			want:    nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := routes("self", tc.catalog, tc.local, tc.own, tc.forwards, tc.balance, nil)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// planListeners runs plan over the inputs and checks the listener address
// of every service, and that its hosts entry names the same address.
func planListeners(t *testing.T, catalog []gossip.Entry, local []localService, own []Announce, forwards []Forward, want map[string]string) {
	t.Helper()
	rs, hosts, _ := plan("self", catalog, local, own, forwards, nil, nil)
	got := map[string]string{}
	for _, r := range rs {
		got[r.Service] = r.Listen
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("listeners %v, want %v", got, want)
	}
	for _, h := range hosts {
		if w, ok := want[h.Name]; ok && h.At.String() != w {
			t.Errorf("hosts entry %s at %s, its listener is on %s", h.Name, h.At, w)
		}
	}
}

func loopbackAt(name string, port uint16) string {
	return netip.AddrPortFrom(loopbackFor(name, map[netip.Addr]bool{}), port).String()
}

func peerA(svcs ...gossip.Service) []gossip.Entry {
	return []gossip.Entry{{Node: "a", Addr: "10.0.0.1", DataPort: 7947, Services: svcs}}
}

// TestPlanOwnPortClaimed: a service that listens on its own port here
// (--announce redis:6379=6379) owns 127.0.0.1:6379 whatever its check says
// and whether or not it is forwarded. Another service that wants port 6379
// moves to its own loopback address, as it would next to any other service
// on that port. Taking 127.0.0.1:6379 while redis is down would answer
// redis's own health check, so redis is offered again and peers' hand-offs
// for redis reach the other service, and redis could not restart on its
// port.
func TestPlanOwnPortClaimed(t *testing.T) {
	redisOwn := Announce{Name: "redis", Port: 6379, Host: "127.0.0.1", TargetPort: 6379}
	redisLocal := localService{Name: "redis", Port: 6379, Backends: []forward.Backend{{Node: "self", Addr: "127.0.0.1:6379"}}}
	cache := peerA(gossip.Service{Name: "cache", Port: 6379})
	for _, tc := range []struct {
		name     string
		local    []localService
		own      []Announce
		forwards []Forward
		want     map[string]string // service -> listen address
	}{
		{
			name:  "passing",
			local: []localService{redisLocal},
			own:   []Announce{redisOwn},
			want:  map[string]string{"redis": loopbackAt("redis", 6379), "cache": loopbackAt("cache", 6379)},
		},
		{
			name: "failing",
			own:  []Announce{redisOwn},
			want: map[string]string{"cache": loopbackAt("cache", 6379)},
		},
		{
			name:     "passing, not forwarded",
			local:    []localService{redisLocal},
			own:      []Announce{redisOwn},
			forwards: []Forward{{Name: "cache"}},
			want:     map[string]string{"cache": loopbackAt("cache", 6379)},
		},
		{
			name:     "failing, not forwarded",
			own:      []Announce{redisOwn},
			forwards: []Forward{{Name: "cache"}},
			want:     map[string]string{"cache": loopbackAt("cache", 6379)},
		},
		{
			name:     "forwarded elsewhere",
			local:    []localService{redisLocal},
			own:      []Announce{redisOwn},
			forwards: []Forward{{Name: "redis", Listen: "127.0.0.1:16379"}, {Name: "cache"}},
			want:     map[string]string{"redis": "127.0.0.1:16379", "cache": loopbackAt("cache", 6379)},
		},
		{
			name: "on another port: 127.0.0.1:6379 is free",
			own:  []Announce{{Name: "redis", Port: 6379, Host: "127.0.0.1", TargetPort: 16379}},
			want: map[string]string{"cache": "127.0.0.1:6379"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			planListeners(t, cache, tc.local, tc.own, tc.forwards, tc.want)
		})
	}
}

// TestPlanForwardAddressClaimed: a --forward address is the user's pin,
// whether or not its service has an instance now. With pg-a pinned to
// 127.0.0.1:5432, pg-b on 5432 stays on its own loopback address while
// pg-a is gone; moving pg-b to 127.0.0.1:5432 then would hand the
// clients of localhost:5432, configured for pg-a, the wrong database.
func TestPlanForwardAddressClaimed(t *testing.T) {
	pin := []Forward{{Name: "pg-a", Listen: "127.0.0.1:5432"}, {Name: "pg-b"}}
	for _, tc := range []struct {
		name    string
		catalog []gossip.Entry
		want    map[string]string
	}{
		{"both have instances", peerA(gossip.Service{Name: "pg-a", Port: 5432}, gossip.Service{Name: "pg-b", Port: 5432}),
			map[string]string{"pg-a": "127.0.0.1:5432", "pg-b": loopbackAt("pg-b", 5432)}},
		{"the pinned service has none", peerA(gossip.Service{Name: "pg-b", Port: 5432}),
			map[string]string{"pg-b": loopbackAt("pg-b", 5432)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			planListeners(t, tc.catalog, nil, nil, pin, tc.want)
		})
	}
}

// TestPlanForwardLocalhost: --forward pg-a=localhost:5432 is 127.0.0.1:5432
// (what binding localhost gives), so it is pinned like that address: pg-b
// on 5432 moves rather than both wanting 127.0.0.1:5432, where the one
// whose listener happened to open first would get localhost:5432 and the
// other an "address already in use". pg-a is named at that address.
func TestPlanForwardLocalhost(t *testing.T) {
	both := peerA(gossip.Service{Name: "pg-a", Port: 5432}, gossip.Service{Name: "pg-b", Port: 5432})
	planListeners(t, both, nil, nil, []Forward{{Name: "pg-a", Listen: "localhost:5432"}, {Name: "pg-b"}},
		map[string]string{"pg-a": "127.0.0.1:5432", "pg-b": loopbackAt("pg-b", 5432)})
	_, hosts, _ := plan("self", both, nil, nil, []Forward{{Name: "pg-a", Listen: "localhost:5432"}}, nil, nil)
	if want := []named{{Name: "pg-a", At: netip.MustParseAddrPort("127.0.0.1:5432")}}; !reflect.DeepEqual(hosts, want) {
		t.Fatalf("hosts %v, want %v", hosts, want)
	}
}

// TestPlanWildcardForwardOverOwnPort: a --forward on the wildcard address
// of the port a local instance listens on itself (--announce
// redis:6379=6379 --forward redis=0.0.0.0:6379) opens no forwarder, as
// one on 127.0.0.1:6379 would not: once redis is down and the wildcard
// listener has its port, it answers redis's check and every connection
// it dials to the local instance comes back to itself.
func TestPlanWildcardForwardOverOwnPort(t *testing.T) {
	own := []Announce{{Name: "redis", Port: 6379, Host: "127.0.0.1", TargetPort: 6379}}
	local := []localService{{Name: "redis", Port: 6379, Backends: []forward.Backend{{Node: "self", Addr: "127.0.0.1:6379"}}}}
	peer := peerA(gossip.Service{Name: "redis", Port: 6379})
	for _, tc := range []struct {
		name   string
		listen string
		local  []localService
	}{
		{"passing", "0.0.0.0:6379", local},
		{"failing", "0.0.0.0:6379", nil},
		{"IPv6 wildcard", "[::]:6379", local},
		{"localhost", "localhost:6379", local},
	} {
		t.Run(tc.name, func(t *testing.T) {
			planListeners(t, peer, tc.local, own, []Forward{{Name: "redis", Listen: tc.listen}}, map[string]string{})
		})
	}
}

// TestPlanOwnTargetClaimed: the address a local instance listens on
// (--announce web:80=8080: web's server is on 127.0.0.1:8080) is that
// server's, whatever its check says. A peer's service on port 8080 moves
// to its own loopback address instead of taking 127.0.0.1:8080, which
// failed with "address already in use" while web's server ran and, once
// it stopped, kept it from restarting, answered its health check and got
// web's connections from peers.
func TestPlanOwnTargetClaimed(t *testing.T) {
	own := []Announce{{Name: "web", Port: 80, Host: "127.0.0.1", TargetPort: 8080}}
	web := localService{Name: "web", Port: 80, Backends: []forward.Backend{{Node: "self", Addr: "127.0.0.1:8080"}}}
	api := peerA(gossip.Service{Name: "api", Port: 8080})
	for _, tc := range []struct {
		name  string
		local []localService
		want  map[string]string
	}{
		{"passing", []localService{web}, map[string]string{"web": "127.0.0.1:80", "api": loopbackAt("api", 8080)}},
		{"failing", nil, map[string]string{"api": loopbackAt("api", 8080)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			planListeners(t, api, tc.local, own, nil, tc.want)
		})
	}
}

// TestPlanHeld: plan names the forwarded services that get no listener
// because their own instance holds the address they would get, whichever
// way that address came; the status shows them as "local".
func TestPlanHeld(t *testing.T) {
	own := []Announce{{Name: "web", Port: 80, Host: "127.0.0.1", TargetPort: 8080}}
	local := []localService{{Name: "web", Port: 80, Backends: []forward.Backend{{Node: "self", Addr: "127.0.0.1:8080"}}}}
	peer := []gossip.Entry{{Node: "a", Addr: "10.0.0.1", DataPort: 7947, Services: []gossip.Service{{Name: "web", Port: 80}}}}
	for _, tc := range []struct {
		name     string
		local    []localService // nil: its check fails, only own lists it
		catalog  []gossip.Entry
		forwards []Forward
		want     bool
	}{
		{"its port is not the target's: forwarded", local, nil, nil, false},
		{"wildcard forward on the target port", local, nil, []Forward{{Name: "web", Listen: "0.0.0.0:8080"}}, true},
		{"ipv6 wildcard forward on the target port", local, nil, []Forward{{Name: "web", Listen: "[::]:8080"}}, true},
		{"loopback forward on the target port", local, nil, []Forward{{Name: "web", Listen: "127.0.0.1:8080"}}, true},
		{"localhost forward on the target port", local, nil, []Forward{{Name: "web", Listen: "localhost:8080"}}, true},
		{"wildcard forward while its check fails, a peer offering it", nil, peer, []Forward{{Name: "web", Listen: "0.0.0.0:8080"}}, true},
		{"forward on another port", local, nil, []Forward{{Name: "web", Listen: "0.0.0.0:8081"}}, false},
		{"not forwarded", local, nil, []Forward{{Name: "other"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, held := plan("self", tc.catalog, tc.local, own, tc.forwards, nil, nil)
			if held["web"] != tc.want {
				t.Errorf("held[web] = %v, want %v (held %v)", held["web"], tc.want, held)
			}
		})
	}
}
