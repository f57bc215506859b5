package mesh

import "net/http"

// observeRoutes adds the read-only observation endpoints to the status
// API: the Prometheus metrics, the event stream, the open connections and
// the live page.
func (n *Node) observeRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", n.metricsHandler())
	mux.HandleFunc("GET /v1/events", n.serveEvents)
}
