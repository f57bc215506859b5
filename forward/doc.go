// Package forward is ambassador's TCP data plane. A Proxy owns the local
// listeners (one per Route) and spreads connections over the route's
// Backends by a balance policy, failing over at once to the next Backend
// when a dial fails and ejecting failed ones for a back-off. A Backend is
// either the service itself, or a peer ambassador's data port, where a
// Server hands the connection to the local service named in a short handoff
// header. A connection's copy phase is a stream (stream.go): plain TCP is
// read straight from the socket into a pooled buffer borrowed only while
// bytes are in flight, so an idle connection holds no buffer and no pipe.
// Half-close passes through in both directions, a reset on one side becomes
// a reset on the other, and IdleTimeout and HalfCloseTimeout bound a
// connection's silence.
//
// With Config.ClientTLS and Config.ServerTLS set (a cluster key), the leg
// between two ambassadors is TLS, authenticated as those configs say;
// half-close travels as TLS 1.3 close_notify, and a reset as a reset of the
// socket under TLS. A Route.Handshake hook can talk to both ends before the
// copy starts.
//
// One connection's life: acceptLoop accepts it; Proxy.serveConn (or
// Server.serveConn on a data port) dials a backend, with failover. On
// Linux, when both conns are plain TCP or TLS over a plain socket (a
// keyed hop), it hands their sockets to one of the owner's event loops
// (evLoops.start, evloop_linux.go) and its goroutine ends: the loop moves
// each message with one read and one write over epoll, through crypto/tls
// for a TLS side (tlsloop_linux.go), and at the end calls back to close
// and account the connection. Otherwise (a Handshake wrapper, other
// systems, or AMBASSADOR_FORWARD_LOOP=0) it calls proxyCopy, where
// stream.copy runs each direction in a goroutine until EOF, an error or a
// timeout, and proxyCopy closes or resets both conns. Both paths end a
// stream the same way. On Linux the goroutine path, too, reads and writes
// its sockets with raw system calls (the plain ones in stream.copy, the
// one under TLS through sysConn), as the loop does.
//
// On Linux a Proxy with the default listener and dialer takes a shorter
// way for a plain backend at an IP address (the one-hop case): acceptRaw
// accepts the socket as a descriptor (accept4), serveRaw starts a
// non-blocking connect to the planned backend and gives both descriptors
// to a loop, which waits for the connect and then runs the stream; no
// goroutine and no net.Conn exist for the connection. Only when that
// connect fails, or is unanswered after DialAttempt, does the connection
// become a net.Conn in a goroutine (serveFD, then serveFrom, the rest of
// serveConn), which tries the next attempts and backends
// (evaccept_linux.go).
//
// Each Proxy and Server runs loopCount event loops (evloop_linux.go tells
// why that many); AMBASSADOR_FORWARD_LOOPS=N in the environment sets N
// instead, for side-by-side benchmarks of one binary.
//
// The package knows nothing about nodes, gossip or discovery: it gets routes
// as plain values through Proxy.Update.
package forward
