package forward

import (
	"io"
	"log/slog"
	"net"
	"testing"
)

// BenchmarkThroughput moves 64 MiB per op over loopback, straight to a sink
// and through one Proxy hop, so the cost of the hop shows as MB/s.
func BenchmarkThroughput(b *testing.B) {
	const size = 64 << 20
	chunk := make([]byte, 1<<20)
	sink := startBackend(b, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) })

	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown(b.Context()) })
	proxyAddr := closedAddr(b)
	p.Update([]Route{StaticRoute(proxyAddr, sink)})

	for _, bc := range []struct{ name, addr string }{{"direct", sink}, {"proxy", proxyAddr}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				c, err := net.Dial("tcp", bc.addr)
				if err != nil {
					b.Fatal(err)
				}
				for range size / len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
				_ = c.(*net.TCPConn).CloseWrite()
				// EOF arrives once the sink has read everything.
				if _, err := io.Copy(io.Discard, c); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
