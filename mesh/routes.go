package mesh

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
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
// skipped: the service itself owns that port. own lists this node's
// announcements whatever their checks say: one whose target is the listen
// address keeps it while it fails, or is waiting for its first check.
// Otherwise a forwarder would take the port of a service that went down,
// answer that service's own health check (its target is that address), so
// that it passes and is offered again, and leave it no port to restart on.
func routes(self string, catalog []gossip.Entry, local []localService, own []Announce, forwards []Forward, balance map[string]string, logins map[string]handshakeFunc) []forward.Route {
	rs, _, _ := plan(self, catalog, local, own, forwards, balance, logins)
	return rs
}

// plan is routes plus the name of every forwarded service mapped to the
// address an application on this host reaches it at (for --hosts and
// --dns): its listener's, or 127.0.0.1 for a service that owns its port
// here; and the set of forwarded services (lower case) that get no
// listener because their own instance holds the address it would have
// (see ownsListenAddr): the status calls them "local".
//
// Shared ports: a service gets 127.0.0.1:PORT, as it always did, unless
// another service wants the same address (two PostgreSQL clusters on 5432,
// or a --forward that names it). Then each of the clashing services without
// a --forward address of its own gets a loopback address of its own,
// loopbackFor(name), and 127.0.0.1:PORT stays unbound: which of them would
// it mean? A client connecting to localhost:5432 is refused rather than
// silently reaching the wrong database; it reaches pg-a:5432 by name. The
// target of a local instance (the address its server listens on) counts
// as wanted too, even while its check fails or it is not forwarded.
func plan(self string, catalog []gossip.Entry, local []localService, own []Announce, forwards []Forward, balance map[string]string, logins map[string]handshakeFunc) ([]forward.Route, []named, map[string]bool) {
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
		s := get(l.Name.String(), l.Port)
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
			s := get(gs.Name.String(), gs.Port)
			s.backends = append(s.backends, forward.Backend{Node: e.Node, Addr: data, Service: gs.Name.Lower(), Weight: gs.Weight})
		}
	}

	listen := map[string]string{}
	for _, f := range forwards {
		listen[f.Name.Lower().String()] = canonicalAddr(f.Listen)
	}
	type want struct {
		name     string
		addr     string
		explicit bool // a --forward address: never moved
	}
	var wants []want
	claims := map[string]map[string]bool{} // listen address -> the services that want it
	claim := func(addr, name string) {
		if claims[addr] == nil {
			claims[addr] = map[string]bool{}
		}
		claims[addr][name] = true
	}
	used := map[netip.Addr]bool{} // addresses loopbackFor must not hand out
	// The address a local instance listens on (its target: 127.0.0.1:PORT
	// for --announce redis:6379=6379, 127.0.0.1:8080 for web:80=8080) is
	// that server's whether its check passes or not and whether it is
	// forwarded or not (see ownsListenAddr): another service that wants it
	// moves, or while the server is down a forwarder would take its port,
	// answer its health check and get its peers' hand-offs.
	for _, a := range own {
		claim(canonicalAddr(a.Target()), a.Name.Lower().String())
	}
	// A --forward address is the user's pin, held while its service has
	// no instance too: the other service on that port stays where it is
	// rather than taking the address its clients meant for this one.
	for name, addr := range listen {
		if addr == "" {
			continue
		}
		claim(addr, name)
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			used[ap.Addr()] = true
		}
	}
	for _, name := range names {
		addr, wanted := listen[name]
		if len(forwards) > 0 && !wanted {
			continue
		}
		w := want{name: name, addr: addr, explicit: addr != ""}
		if !w.explicit {
			w.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(byName[name].port))
		}
		claim(w.addr, name)
		wants = append(wants, w)
	}
	// Name order, so that the outcome depends on the set of services and
	// not on the order the catalog listed them in.
	sort.Slice(wants, func(i, j int) bool { return wants[i].name < wants[j].name })
	var out []forward.Route
	var hosts []named
	held := map[string]bool{}
	for _, w := range wants {
		s := byName[w.name]
		if !w.explicit && len(claims[w.addr]) > 1 {
			w.addr = net.JoinHostPort(loopbackFor(w.name, used).String(), strconv.Itoa(s.port))
		}
		if a, ok := reachAt(w.addr); ok {
			hosts = append(hosts, named{Name: w.name, At: a})
		}
		if ownsListenAddr(w.addr, local, own, w.name) {
			held[w.name] = true
			continue
		}
		out = append(out, forward.Route{Service: w.name, Listen: w.addr, Backends: s.backends, Balance: balance[w.name], Handshake: logins[w.name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Listen < out[j].Listen })
	return out, hosts, held
}

// reachAt is the address a local client dials for a listener on addr: the
// listener's IP, or 127.0.0.1 for a wildcard listener. A listener given by
// host name has no address to publish.
func reachAt(addr string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.AddrPort{}, false
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port()), true
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// loopbackFor is the loopback address of a service that shares its port:
// 127.X.Y.Z from the 32-bit FNV-1a hash of its name (the low 24 bits), so it
// is the same on every host and across restarts. Addresses in 127.0.0.0/16
// are skipped (127.0.0.1 itself, 127.0.0.53 of systemd-resolved, 127.0.1.1
// that Debian gives the host name), as are .0 and .255 last octets; so is
// an address in used (another service's, or a --forward's). A skipped
// address is hashed again with "#1", "#2", ... appended to the name. Linux
// routes all of 127/8 to lo, so binding there needs no setup; other systems
// need an alias on lo0 first. loopbackFor marks the address it returns as
// used.
func loopbackFor(name string, used map[netip.Addr]bool) netip.Addr {
	for i := 0; ; i++ {
		h := fnv.New32a()
		h.Write([]byte(name))
		if i > 0 {
			fmt.Fprintf(h, "#%d", i)
		}
		v := h.Sum32()
		b := [4]byte{127, byte(v >> 16), byte(v >> 8), byte(v)}
		a := netip.AddrFrom4(b)
		if b[1] == 0 || b[3] == 0 || b[3] == 255 || used[a] {
			continue
		}
		used[a] = true
		return a
	}
}

// ownsListenAddr reports whether a local instance of the service listens on
// addr itself, in which case a forwarder there would only collide with it:
// one that is offered now (local), or one this node announces (own), even
// while its check fails. A wildcard addr on the instance's loopback port
// counts too (see loopsBack): while the instance is down, such a
// forwarder would take its port and dial every connection to itself.
func ownsListenAddr(addr string, local []localService, own []Announce, name string) bool {
	for _, l := range local {
		if l.Name.String() != name {
			continue
		}
		for _, b := range l.Backends {
			if loopsBack(addr, b.Addr) {
				return true
			}
		}
	}
	for _, a := range own {
		if a.Name.Lower().String() == name && loopsBack(addr, a.Target()) {
			return true
		}
	}
	return false
}

// canonicalAddr is addr (host:port) with host "localhost" written as
// 127.0.0.1, the address that listening on localhost takes here; so a
// --forward to localhost:5432 clashes with a listener on 127.0.0.1:5432,
// as it does when both bind. Anything else is returned as it is.
func canonicalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || !strings.EqualFold(host, "localhost") {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}
