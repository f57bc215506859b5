package main

import (
	"io"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// BenchmarkForwardCommand measures the throughput of one `ambassador
// forward` hop (the built binary, as users run it) against a direct
// connection on loopback, in the same run:
//
//	go test -run '^$' -bench ForwardCommand -benchtime 20x .
//
// Each op sends 64 MiB, half-closes, and waits for the sink to close.
func BenchmarkForwardCommand(b *testing.B) {
	sink := listenSink(b)
	b.Run("direct", func(b *testing.B) { pump(b, sink) })
	b.Run("ambassador-forward", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(binary, "forward", "--log-level", "warn", addr+"="+sink)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("ambassador forward did not listen on %s: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		pump(b, addr)
	})
}

const pumpSize = 64 << 20

func pump(b *testing.B, addr string) {
	buf := make([]byte, 256<<10)
	b.SetBytes(pumpSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		for sent := 0; sent < pumpSize; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
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

// listenSink accepts connections, discards what they send and closes when
// they half-close.
func listenSink(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	return ln.Addr().String()
}
