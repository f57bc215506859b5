package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/gossip"
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
	Nodes  []string `json:"nodes"`            // nodes that host it, sorted
	Local  string   `json:"local,omitempty"`  // this node's own target, when it hosts the service
	Listen string   `json:"listen,omitempty"` // this node's listener for it
	// State of the listener: "listening", "error" (see Error), "local" (the
	// service itself owns the port on this host) or "none" (not forwarded).
	State    string `json:"state"`
	Error    string `json:"error,omitempty"`
	Accepted uint64 `json:"accepted"`
	Active   uint64 `json:"active"`
}

// MembersView is this node's view of the cluster. Safe for concurrent use.
func (n *Node) MembersView() Members {
	return Members{Node: n.name, Cluster: n.cfg.Cluster, Members: n.cluster.Members()}
}

// ServicesView is this node's view of the catalog and of its own
// listeners. Safe for concurrent use.
func (n *Node) ServicesView() Services {
	type agg struct {
		port  int
		nodes []string
	}
	byName := map[string]*agg{}
	for _, e := range n.cluster.Catalog() {
		for _, s := range e.Services {
			a, ok := byName[s.Name]
			if !ok {
				a = &agg{port: s.Port}
				byName[s.Name] = a
			}
			a.nodes = append(a.nodes, e.Node)
		}
	}
	status := map[string]forward.ListenerStatus{}
	for _, ls := range n.proxy.Status() {
		status[ls.Service] = ls
	}
	out := Services{Node: n.name, Services: []ServiceView{}}
	for name, a := range byName {
		sort.Strings(a.nodes)
		v := ServiceView{Name: name, Port: a.port, Nodes: a.nodes, State: "none"}
		if t, ok := n.lookupLocal(name); ok {
			v.Local = strings.Join(t, ",")
		}
		if ls, ok := status[name]; ok {
			v.Listen, v.State, v.Error = ls.Listen, ls.State, ls.Err
			v.Accepted, v.Active = ls.Accepted, ls.Active
		} else if v.Local != "" && n.forwarded(name) {
			v.State = "local"
		}
		out.Services = append(out.Services, v)
	}
	sort.Slice(out.Services, func(i, j int) bool { return out.Services[i].Name < out.Services[j].Name })
	return out
}

func (n *Node) forwarded(name string) bool {
	fs := n.view().forwards
	if len(fs) == 0 {
		return true
	}
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

func (n *Node) startHTTP() error {
	addr, _ := ParseAddr(n.cfg.HTTP, "127.0.0.1") // validated in Config.Validate
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mesh: status api: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.MembersView()) })
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.ServicesView()) })
	mux.HandleFunc("POST /v1/announce", func(w http.ResponseWriter, r *http.Request) {
		var req AnnounceRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
			return
		}
		a, err := ParseAnnounce(req.Announce)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err := n.Announce(a); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, AnnounceRequest{Announce: a.String()})
	})
	mux.HandleFunc("DELETE /v1/announce/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := n.Withdraw(name); err != nil {
			writeError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, map[string]string{"withdrawn": name})
	})
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"node": n.name, "status": "ok"})
	})
	n.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// Not in n.wg: that group is the loops', which stop before the status
	// API does; this goroutine ends when httpSrv.Shutdown closes ln.
	n.httpWG.Go(func() {
		if err := n.httpSrv.Serve(ln); err != nil && err != http.ErrServerClosed {
			n.log.Error("status api stopped", "listen", addr, "err", err)
		}
	})
	return nil
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

// Fetch reads one of the status API's documents (path "/v1/members" or
// "/v1/services") from a running node at addr into v.
func Fetch(ctx context.Context, addr, path string, v any) error {
	return Call(ctx, addr, http.MethodGet, path, nil, v)
}

// Call sends one request to the control API of a running node at addr,
// with body (if not nil) as JSON, and decodes the answer into v. An error
// answer comes back as an error carrying the node's message.
func Call(ctx context.Context, addr, method, path string, body, v any) error {
	hp, err := ParseAddr(addr, "127.0.0.1")
	if err != nil {
		return fmt.Errorf("mesh: status api address: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("mesh: status api: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+hp+path, rd)
	if err != nil {
		return fmt.Errorf("mesh: status api: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("mesh: is a node running? status api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return fmt.Errorf("node at %s: %s", hp, e.Error)
		}
		return fmt.Errorf("mesh: status api %s%s: %s", hp, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("mesh: status api %s%s: decode: %w", hp, path, err)
	}
	return nil
}
