package mesh

import (
	"encoding/json"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/ambassador-mesh/ambassador/gossip"
	"github.com/ambassador-mesh/ambassador/health"
)

// Members is the body of GET /v1/members.
type Members struct {
	Node    string          `json:"node"`
	Cluster string          `json:"cluster"`
	Members []gossip.Member `json:"members"`
}

// Services is the body of GET /v1/services.
type Services struct {
	Node     string        `json:"node"`
	Services []ServiceView `json:"services"`
}

// ServiceView is one service as this node sees it.
type ServiceView struct {
	Name   string   `json:"name"`
	Port   int      `json:"port"`
	Nodes  []string `json:"nodes"`            // nodes that offer it now, sorted
	Local  string   `json:"local,omitempty"`  // this node's own targets, when it hosts the service
	Listen string   `json:"listen,omitempty"` // this node's listener for it
	// State of the listener: "listening", "error" (see Error), "local" (the
	// service itself owns the port on this host) or "none" (not forwarded).
	State    string `json:"state"`
	Error    string `json:"error,omitempty"`
	Balance  string `json:"balance,omitempty"`
	Accepted uint64 `json:"accepted"`
	// Active is the connections open now through its listener, and
	// through one it had before that moved or closed.
	Active uint64 `json:"active"`
	// Connections cut on either hop this node runs (its listener and its
	// data port): by a mid-stream error (both ends reset), by
	// --idle-timeout and by --half-close-timeout.
	StreamErrors      uint64         `json:"stream_errors"`
	IdleTimeouts      uint64         `json:"idle_timeouts"`
	HalfCloseTimeouts uint64         `json:"half_close_timeouts"`
	Instances         []InstanceView `json:"instances"`
}

// InstanceView is one instance of a service: where it is and how it is
// doing, as far as this node knows.
type InstanceView struct {
	Node string `json:"node"`
	Addr string `json:"addr"` // what this node dials: the service, or the peer's data port
	// Health is "passing" (an instance in the catalog passes its owner's
	// check), or, for this node's own instance, "failing" (withdrawn),
	// "pending" (first check not done) or "unchecked" (--check NAME=none).
	Health   string `json:"health"`
	Active   uint64 `json:"active"`
	Conns    uint64 `json:"conns"`
	Failures uint64 `json:"failures"`
	Ejected  bool   `json:"ejected,omitempty"` // skipped after failed dials, for a back-off
}

// MembersView is this node's view of the cluster. Safe for concurrent use.
func (n *Node) MembersView() Members {
	return Members{Node: n.name, Cluster: n.cfg.Cluster, Members: n.cluster.Members()}
}

// ServicesView is this node's view of the catalog, of its own services'
// health and of its listeners. Safe for concurrent use.
func (n *Node) ServicesView() Services {
	v := n.view()
	byName := map[string]*ServiceView{}
	get := func(name string, port int) *ServiceView {
		sv, ok := byName[name]
		if !ok {
			sv = &ServiceView{Name: name, Port: port, Nodes: []string{}, State: "none", Instances: []InstanceView{}}
			byName[name] = sv
		}
		return sv
	}
	// This node's own announcements show even while failing their check.
	for _, a := range v.announces {
		name := a.Name.Lower().String()
		sv := get(name, a.Port)
		sv.Local = a.Target()
		state := "pending"
		switch {
		case v.check(a.Name).Kind == health.KindNone:
			state = "unchecked"
		case !v.passing(a.Name):
			if _, known := v.healthy[name]; known {
				state = "failing"
			}
		default:
			state = "passing"
		}
		sv.Instances = append(sv.Instances, InstanceView{Node: n.name, Addr: a.Target(), Health: state})
	}
	cat := n.cluster.Catalog()
	for _, e := range cat {
		for _, s := range e.Services {
			sv := get(s.Name.String(), s.Port)
			sv.Nodes = append(sv.Nodes, e.Node)
			if e.Node != n.name {
				addr := net.JoinHostPort(e.Addr, strconv.Itoa(e.DataPort))
				sv.Instances = append(sv.Instances, InstanceView{Node: e.Node, Addr: addr, Health: "passing"})
			}
		}
		// A peer's announcement whose check fails (gossip.Entry.Down): shown
		// so that an operator sees it failing rather than gone, but not in
		// Nodes, which lists where the service is offered, and not routed.
		if e.Node == n.name {
			continue // this node's own are listed above, from its checker
		}
		for _, s := range e.Down {
			sv := get(s.Name.String(), s.Port)
			addr := net.JoinHostPort(e.Addr, strconv.Itoa(e.DataPort))
			sv.Instances = append(sv.Instances, InstanceView{Node: e.Node, Addr: addr, Health: "failing"})
		}
	}
	for _, ls := range v.services(n.name) {
		if sv := byName[ls.Name.String()]; sv != nil && sv.Local == "" { // an upstream
			var addrs []string
			for _, b := range ls.Backends {
				addrs = append(addrs, b.Addr)
				sv.Instances = append(sv.Instances, InstanceView{Node: n.name, Addr: b.Addr, Health: "passing"})
			}
			sv.Local = strings.Join(addrs, ",")
		}
	}
	listeners := n.proxy.Status()
	for _, ls := range listeners {
		sv := byName[ls.Service]
		if sv == nil {
			continue
		}
		sv.Listen, sv.State, sv.Error, sv.Balance = ls.Listen, ls.State, ls.Err, ls.Balance
		sv.Accepted, sv.Active = ls.Accepted, ls.Active
		sv.StreamErrors += ls.StreamErrors
		sv.IdleTimeouts += ls.IdleTimeouts
		sv.HalfCloseTimeouts += ls.HalfCloseTimeouts
		for _, bs := range ls.BackendStats {
			for i := range sv.Instances {
				if in := &sv.Instances[i]; in.Addr == bs.Backend.Addr && in.Node == bs.Backend.Node {
					in.Active, in.Conns, in.Failures, in.Ejected = bs.Active, bs.Conns, bs.Failures, bs.Ejected
				}
			}
		}
	}
	for name, open := range openElsewhere(listeners, n.proxy.Connections()) {
		if sv := byName[name]; sv != nil {
			sv.Active += open // still open through a listener that moved or closed
		}
	}
	for name, st := range n.data.Stats().ByService {
		if sv := byName[name]; sv != nil {
			sv.StreamErrors += st.StreamErrors
			sv.IdleTimeouts += st.IdleTimeouts
			sv.HalfCloseTimeouts += st.HalfCloseTimeouts
		}
	}
	// Where the reconcile loop put no listener because the service's own
	// instance holds the address: on its port, or on a --forward address
	// (0.0.0.0:PORT, say) that takes the instance's.
	_, _, held := plan(n.name, cat, v.services(n.name), v.announces, v.forwards, v.balance, v.logins)
	out := Services{Node: n.name, Services: []ServiceView{}}
	for _, sv := range byName {
		if sv.State == "none" && held[sv.Name] {
			sv.State = "local"
		}
		sort.Strings(sv.Nodes)
		out.Services = append(out.Services, *sv)
	}
	sort.Slice(out.Services, func(i, j int) bool { return out.Services[i].Name < out.Services[j].Name })
	return out
}

// readOnlyRoutes registers the documents that change nothing. They are
// served on both doors of the local API (see api.go): the TCP status
// address, to anyone who reaches it under a Host name DNS rebinding cannot
// forge, and the control socket. A new read-only route is one line here;
// anything that changes the node goes in controlRoutes instead.
func (n *Node) readOnlyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.MembersView()) })
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.ServicesView()) })
	n.observeRoutes(mux) // metrics, events, connections, the page: observe.go
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"node": n.name, "status": "ok"})
	})
}

// AnnounceRequest is the body of POST /v1/announce and of its answer.
type AnnounceRequest struct {
	Announce string `json:"announce"` // NAME[:PORT]=[HOST:]TARGET_PORT
}

// apiError is the body of every non-200 answer.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiError{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}
