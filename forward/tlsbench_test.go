package forward

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/trust"
)

// keyedHops returns where to dial backend through the keyed mesh path as
// mesh wires it: a Proxy listener, a TLS 1.3 handoff to a Server's data
// port (fingerprints pinned both ways), and on to backend.
func keyedHops(b *testing.B, backend string) string {
	b.Helper()
	clientID, err := trust.NewIdentity("client")
	if err != nil {
		b.Fatal(err)
	}
	serverID, err := trust.NewIdentity("server")
	if err != nil {
		b.Fatal(err)
	}
	discard := slog.New(slog.DiscardHandler)

	scfg := DefaultConfig()
	scfg.Logger = discard
	scfg.ServerTLS = trust.ServerConfig(serverID, func(fp string) bool { return fp == clientID.Fingerprint() })
	s, err := NewServer(scfg, func(svcname.Name) ([]string, bool) { return []string{backend}, true })
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(b.Context(), "127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Shutdown(b.Context()) })

	pcfg := DefaultConfig()
	pcfg.Logger = discard
	pcfg.ClientTLS = benchClientTLS(clientID, serverID.Fingerprint())
	p, err := New(pcfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown(b.Context()) })
	addr := closedAddr(b)
	p.Update([]Route{{Service: "svc", Listen: addr,
		Backends: []Backend{{Node: "server", Addr: s.Addr().String(), Service: "svc"}}}})
	return addr
}

// benchClientTLS is Config.ClientTLS as mesh builds it: configs built once
// per fingerprint, sessions resumed.
func benchClientTLS(id *trust.Identity, fp string) func(Backend) (*tls.Config, error) {
	confs := id.ClientConfigs()
	return func(Backend) (*tls.Config, error) { return confs.Get(fp), nil }
}

// BenchmarkKeyedThroughput moves 64 MiB per op through the two keyed hops
// to a sink.
func BenchmarkKeyedThroughput(b *testing.B) {
	const size = 64 << 20
	chunk := make([]byte, 1<<20)
	addr := keyedHops(b, startBackend(b, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) }))
	benchBulk(b, addr, size, chunk)
}

// BenchmarkKeyedPingPong sends 16 bytes and waits for their echo per op
// through one open connection over the two keyed hops.
func BenchmarkKeyedPingPong(b *testing.B) {
	c, err := net.Dial("tcp", keyedHops(b, startBackend(b, echo)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, 16), make([]byte, 16)
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyedConnect opens a connection, exchanges one byte and closes
// it per op over the two keyed hops: a TLS handshake and a handoff each.
func BenchmarkKeyedConnect(b *testing.B) {
	addr := keyedHops(b, startBackend(b, echo))
	buf := make([]byte, 1)
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
