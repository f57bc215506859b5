package mesh

import (
	"net/http"
	"time"
)

// observeRoutes adds the read-only observation endpoints to the status
// API: the Prometheus metrics, the event stream, the open connections and
// the live page.
func (n *Node) observeRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", n.metricsHandler())
	mux.HandleFunc("GET /v1/events", n.serveEvents)
	mux.HandleFunc("GET /v1/connections", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.ConnectionsView()) })
	mux.HandleFunc("GET /{$}", servePage)
}

// Connections is the body of GET /v1/connections.
type Connections struct {
	Node        string           `json:"node"`
	Time        time.Time        `json:"time"` // when the snapshot was taken; Age is relative to it
	Connections []ConnectionView `json:"connections"`
	// Traffic is every listener's totals, for throughput: the page takes
	// the difference of two snapshots over the difference of their Time.
	Traffic []ServiceTraffic `json:"traffic"`
}

// ServiceTraffic is the totals of this node's listener for a service.
type ServiceTraffic struct {
	Service  string `json:"service"`
	Accepted uint64 `json:"accepted"`
	Active   uint64 `json:"active"`    // also through a listener of the service that moved since
	BytesIn  uint64 `json:"bytes_in"`  // client to service, growing while connections run
	BytesOut uint64 `json:"bytes_out"` // service to client
}

// ConnectionView is one open connection through one of this node's
// listeners.
type ConnectionView struct {
	Service  string    `json:"service"`
	Listen   string    `json:"listen"`
	Instance string    `json:"instance"` // the node of the instance it goes to
	Backend  string    `json:"backend"`  // the address dialed: the service, or the peer's data port
	Client   string    `json:"client"`
	Since    time.Time `json:"since"`
	Age      float64   `json:"age_seconds"`
	BytesIn  uint64    `json:"bytes_in"`  // client to service so far
	BytesOut uint64    `json:"bytes_out"` // service to client so far
}

// ConnectionsView lists the connections open now through this node's
// listeners, oldest first. Safe for concurrent use.
func (n *Node) ConnectionsView() Connections {
	now := time.Now()
	// Which node each backend address belongs to, per listener.
	owner := map[[2]string]string{}
	out := Connections{Node: n.name, Time: now.UTC(), Connections: []ConnectionView{}, Traffic: []ServiceTraffic{}}
	listeners := n.proxy.Status()
	conns := n.proxy.Connections()
	elsewhere := openElsewhere(listeners, conns)
	for _, ls := range listeners {
		for _, b := range ls.Backends {
			owner[[2]string{ls.Listen, b.Addr}] = b.Node
		}
		// A service's connections through a listener that moved count
		// with its listener now; one with no listener now has no totals.
		active := ls.Active + elsewhere[ls.Service]
		delete(elsewhere, ls.Service)
		out.Traffic = append(out.Traffic, ServiceTraffic{Service: ls.Service, Accepted: ls.Accepted, Active: active,
			BytesIn: ls.BytesIn, BytesOut: ls.BytesOut})
	}
	for _, c := range conns {
		out.Connections = append(out.Connections, ConnectionView{
			Service: c.Service, Listen: c.Listen, Instance: owner[[2]string{c.Listen, c.Backend}], Backend: c.Backend,
			Client: c.Client, Since: c.Since.UTC(), Age: now.Sub(c.Since).Seconds(), BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		})
	}
	return out
}
