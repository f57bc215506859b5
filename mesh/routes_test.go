package mesh

import (
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
