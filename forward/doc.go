// Package forward is ambassador's TCP data plane. A Proxy owns the local
// listeners (one per Route) and spreads connections over the route's
// Backends by a balance policy, failing over at once to the next Backend
// when a dial fails and ejecting failed ones for a back-off. A Backend is
// either the service itself, or a peer ambassador's data port, where a
// Server hands the connection to the local service named in a short handoff
// header. Bytes are copied between raw *net.TCPConn values so Linux splices
// them, with half-close passed through in both directions.
//
// With Config.ClientTLS and Config.ServerTLS set (a cluster key), the leg
// between two ambassadors is TLS, authenticated as those configs say; that
// leg is copied through a buffer, and half-close travels as TLS 1.3
// close_notify. A Route.Handshake hook can talk to both ends before the
// copy starts.
//
// The package knows nothing about nodes, gossip or discovery: it gets routes
// as plain values through Proxy.Update.
package forward
