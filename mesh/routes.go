package mesh

import (
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/gossip"
)

// routes turns this node's view of the catalog into the listeners the data
// plane should run. It is a pure function so that the mapping from catalog to
// routes is table-tested without sockets.
//
// Every service in the catalog (or only those named by forwards, when there
// are any) gets a listener on 127.0.0.1:PORT or on the --forward address. Its
// backends are this node's own instance first (dialled directly), then the
// other nodes' ambassadors in node order (dialled through their data port);
// that order is what the "first" balance policy follows, the others spread
// connections over all of them.
// A service whose only local instance already sits on the listen address is
// skipped: the service itself owns that port.
func routes(self string, catalog []gossip.Entry, local []localService, forwards []Forward, balance map[string]string, logins map[string]handshakeFunc) []forward.Route {
	type svc struct {
		port     int
		backends []forward.Backend
	}
	byName := map[string]*svc{}
	var names []string
	get := func(name string, port int) *svc {
		key := strings.ToLower(name)
		s, ok := byName[key]
		if !ok {
			s = &svc{port: port}
			byName[key] = s
			names = append(names, key)
		}
		return s
	}
	// The local instances come first so that a client on this host stays
	// on this host; their port also wins over a peer's differing port.
	for _, l := range local {
		s := get(l.Name, l.Port)
		s.backends = append(s.backends, l.Backends...)
	}
	entries := append([]gossip.Entry(nil), catalog...)
	sort.Slice(entries, func(i, j int) bool { return entries[i].Node < entries[j].Node })
	for _, e := range entries {
		if e.Node == self {
			continue
		}
		data := net.JoinHostPort(e.Addr, strconv.Itoa(e.DataPort))
		for _, gs := range e.Services {
			s := get(gs.Name, gs.Port)
			s.backends = append(s.backends, forward.Backend{Node: e.Node, Addr: data, Service: strings.ToLower(gs.Name), Weight: gs.Weight})
		}
	}

	listen := map[string]string{}
	for _, f := range forwards {
		listen[strings.ToLower(f.Name)] = f.Listen
	}
	var out []forward.Route
	for _, name := range names {
		s := byName[name]
		addr, wanted := listen[name]
		if len(forwards) > 0 && !wanted {
			continue
		}
		if addr == "" {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		}
		if ownsListenAddr(addr, local, name) {
			continue
		}
		out = append(out, forward.Route{Service: name, Listen: addr, Backends: s.backends, Balance: balance[name], Handshake: logins[name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Listen < out[j].Listen })
	return out
}

// ownsListenAddr reports whether a local instance of the service listens on
// addr itself, in which case a forwarder there would only collide with it.
func ownsListenAddr(addr string, local []localService, name string) bool {
	for _, l := range local {
		if l.Name != name {
			continue
		}
		for _, b := range l.Backends {
			host, port, _ := net.SplitHostPort(b.Addr)
			if host == "localhost" {
				host = "127.0.0.1"
			}
			if net.JoinHostPort(host, port) == addr {
				return true
			}
		}
	}
	return false
}
