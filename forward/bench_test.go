package forward

import (
	"context"
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
			benchBulk(b, bc.addr, size, chunk)
		})
	}
}

// BenchmarkStreamPingPong sends 16 bytes and waits for their echo per op,
// through one open connection: the cost of a small request/response on
// the copy path (two reads and two writes per hop), with its allocations.
func BenchmarkStreamPingPong(b *testing.B) {
	for _, hop := range []string{"direct", "proxy"} {
		b.Run(hop, func(b *testing.B) {
			addr := benchHop(b, hop, startBackend(b, echo))
			c, err := net.Dial("tcp", addr)
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
		})
	}
}

// BenchmarkStreamConnect opens a connection, exchanges one byte and closes
// it per op: the per-connection cost of accept, dial, socket options and
// starting and ending a stream.
func BenchmarkStreamConnect(b *testing.B) {
	for _, hop := range []string{"direct", "proxy"} {
		b.Run(hop, func(b *testing.B) {
			addr := benchHop(b, hop, startBackend(b, echo))
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
		})
	}
}

// benchHop returns where to dial backend: itself, or through a Proxy.
func benchHop(b *testing.B, hop, backend string) string {
	if hop == "direct" {
		return backend
	}
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	addr := closedAddr(b)
	p.Update([]Route{StaticRoute(addr, backend)})
	return addr
}

// benchBulk sends size bytes in chunks per op over a new connection to
// addr, whose far end discards them, and waits for its EOF, which arrives
// once the sink has read everything.
func benchBulk(b *testing.B, addr string, size int, chunk []byte) {
	b.SetBytes(int64(size))
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		for range size / len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		_ = c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
