package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/trust"
)

// tlsPair is a client ambassador and a server ambassador that trust each
// other, as mesh wires them: the client pins the server's fingerprint, the
// server accepts the client's.
type tlsPair struct {
	clientID, serverID *trust.Identity
	client             func(Backend) (*tls.Config, error) // Config.ClientTLS
	server             *tls.Config                        // Config.ServerTLS
}

func newIdentity(t *testing.T, name string) *trust.Identity {
	t.Helper()
	id, err := trust.NewIdentity(name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newTLSPair(t *testing.T) *tlsPair {
	t.Helper()
	tp := &tlsPair{clientID: newIdentity(t, "client"), serverID: newIdentity(t, "server")}
	tp.client = func(Backend) (*tls.Config, error) {
		return trust.ClientConfig(tp.clientID, tp.serverID.Fingerprint()), nil
	}
	tp.server = trust.ServerConfig(tp.serverID, func(fp string) bool { return fp == tp.clientID.Fingerprint() })
	return tp
}

// dialRecorder is a DialFunc seam that records the addresses dialed.
type dialRecorder struct {
	mu     sync.Mutex
	dialed []string // guarded by mu
}

func (d *dialRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *dialRecorder) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.dialed
	d.dialed = nil
	return out
}

func TestTLSFailover(t *testing.T) {
	tp := newTLSPair(t)
	stranger := newIdentity(t, "stranger")
	scfg := testConfig(t)
	scfg.ServerTLS = tp.server
	good := newServer(t, scfg, map[string]string{"svc": startBackend(t, reply("good"))}).Addr().String()
	// other is a second keyed peer, so that a route can list it before good
	// (backends are deduplicated by address).
	other := newServer(t, scfg, map[string]string{"svc": startBackend(t, reply("other"))}).Addr().String()
	plain := newServer(t, testConfig(t), map[string]string{"svc": startBackend(t, reply("plain"))}).Addr().String()

	pcfg := testConfig(t)
	pcfg.ClientTLS = func(b Backend) (*tls.Config, error) {
		switch b.Node {
		case "good":
			return tp.client(b)
		case "wrong-pin":
			return trust.ClientConfig(tp.clientID, stranger.Fingerprint()), nil
		case "unknown-client":
			return trust.ClientConfig(stranger, tp.serverID.Fingerprint()), nil
		}
		return nil, fmt.Errorf("no fingerprint known for node %q", b.Node)
	}
	for _, tc := range []struct {
		name  string
		first Backend
	}{
		{"wrong pin", Backend{Node: "wrong-pin", Addr: other, Service: "svc"}},
		{"client unknown to the server", Backend{Node: "unknown-client", Addr: other, Service: "svc"}},
		{"no config for node", Backend{Node: "nobody", Addr: other, Service: "svc"}},
		{"plain server", Backend{Node: "good", Addr: plain, Service: "svc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, al := newProxy(t, pcfg)
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Balance: BalanceFirst,
				Backends: []Backend{tc.first, {Node: "good", Addr: good, Service: "svc"}}}})
			if got := roundTrip(t, al.addr(t, "auto:svc"), ""); got != "good" {
				t.Fatalf("got %q, want %q", got, "good")
			}
			if got := p.Status()[0].DialErrors; got != 1 {
				t.Errorf("DialErrors: got %d, want 1", got)
			}
		})
	}
}

func TestTLSServerRejects(t *testing.T) {
	tp := newTLSPair(t)
	stranger := newIdentity(t, "stranger")
	var rec dialRecorder
	cfg := testConfig(t)
	cfg.ServerTLS = tp.server
	cfg.DialFunc = rec.dial
	var lookups atomic.Int64
	s, err := NewServer(cfg, func(svcname.Name) ([]string, bool) {
		lookups.Add(1)
		return []string{startBackend(t, reply("secret"))}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	addr := s.Addr().String()
	header, err := appendHandoff(nil, "web")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("plaintext client", func(t *testing.T) {
		c := dial(t, addr)
		if _, err := c.Write(header); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if errors.Is(err, syscall.ECONNRESET) {
			err = nil // the server closed with our header unread
		}
		if err != nil || len(b) != 0 {
			t.Fatalf("read: got %q, %v; want a close with no byte", b, err)
		}
	})

	noCert := trust.ClientConfig(tp.clientID, tp.serverID.Fingerprint())
	noCert.Certificates = nil
	for _, tc := range []struct {
		name string
		conf *tls.Config
	}{
		{"unknown client certificate", trust.ClientConfig(stranger, tp.serverID.Fingerprint())},
		{"no client certificate", noCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc := tls.Client(dial(t, addr), tc.conf)
			// In TLS 1.3 the client's handshake may finish before the
			// server has checked the client's certificate; the rejection
			// then arrives on the first read.
			if err := tc.Handshake(); err == nil {
				_, _ = tc.Write(header)
				b, err := io.ReadAll(tc)
				if err == nil || len(b) != 0 {
					t.Fatalf("read: got %q, %v; want a TLS error and no byte", b, err)
				}
			}
		})
	}

	if n := lookups.Load(); n != 0 {
		t.Errorf("lookup called %d times, want 0: a header got past TLS", n)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("server dialed %q, want nothing", got)
	}
}

func TestTLSServerConfigValidation(t *testing.T) {
	cfg := testConfig(t)
	cfg.ServerTLS = &tls.Config{}
	if _, err := NewServer(cfg, func(svcname.Name) ([]string, bool) { return nil, false }); err == nil {
		t.Error("NewServer with a ServerTLS without certificate: got nil error")
	}
}

// halfCloser is a Handshake wrapper that passes half-close on and counts
// the bytes written through it.
type halfCloser struct {
	net.Conn
	written atomic.Int64
}

func (h *halfCloser) Write(b []byte) (int, error) {
	n, err := h.Conn.Write(b)
	h.written.Add(int64(n))
	return n, err
}

func (h *halfCloser) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("no CloseWrite")
}

func TestRouteHandshake(t *testing.T) {
	newRoute := func(t *testing.T, cfg Config, h func(ctx context.Context, client, backend net.Conn) (net.Conn, net.Conn, error), backends ...Backend) (*Proxy, string) {
		t.Helper()
		p, al := newProxy(t, cfg)
		p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: backends, Balance: BalanceFirst, Handshake: h}})
		return p, al.addr(t, "auto:svc")
	}

	t.Run("runs before the copy and writes both sides", func(t *testing.T) {
		backend := startBackend(t, func(c *net.TCPConn) {
			b, _ := io.ReadAll(c)
			_, _ = fmt.Fprintf(c, "backend got %q", b)
		})
		for _, topo := range []string{"direct", "handoff-tls"} {
			t.Run(topo, func(t *testing.T) {
				b := Backend{Addr: backend}
				cfg := testConfig(t)
				if topo == "handoff-tls" {
					tp := newTLSPair(t)
					scfg := testConfig(t)
					scfg.ServerTLS = tp.server
					b = Backend{Node: "b", Addr: newServer(t, scfg, map[string]string{"svc": backend}).Addr().String(), Service: "svc"}
					cfg.ClientTLS = tp.client
				}
				_, addr := newRoute(t, cfg, func(ctx context.Context, client, backend net.Conn) (net.Conn, net.Conn, error) {
					if _, ok := ctx.Deadline(); !ok {
						return nil, nil, errors.New("ctx has no deadline")
					}
					if _, err := io.WriteString(backend, "AUTH "); err != nil {
						return nil, nil, err
					}
					if _, err := io.WriteString(client, "welcome; "); err != nil {
						return nil, nil, err
					}
					return client, backend, nil
				}, b)
				if got, want := roundTrip(t, addr, "data"), `welcome; backend got "AUTH data"`; got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			})
		}
	})

	t.Run("wrappers keep half-close", func(t *testing.T) {
		backend, received := bannerBackend(t)
		var wrapped sync.Map // "client"/"backend" → *halfCloser
		_, addr := newRoute(t, testConfig(t), func(_ context.Context, client, backend net.Conn) (net.Conn, net.Conn, error) {
			cw, bw := &halfCloser{Conn: client}, &halfCloser{Conn: backend}
			wrapped.Store("client", cw)
			wrapped.Store("backend", bw)
			return cw, bw, nil
		}, Backend{Addr: backend})
		c := dial(t, addr)
		b, err := io.ReadAll(c) // EOF proves the backend's half-close came through the wrapper
		if err != nil || string(b) != "banner" {
			t.Fatalf("read: got %q, %v, want %q", b, err, "banner")
		}
		if _, err := io.WriteString(c, "after FIN"); err != nil {
			t.Fatalf("write after the backend's FIN: %v", err)
		}
		_ = c.CloseWrite()
		if got := <-received; got != "after FIN" {
			t.Errorf("backend got %q, want %q", got, "after FIN")
		}
		for side, want := range map[string]int64{"client": 6, "backend": 9} {
			v, ok := wrapped.Load(side)
			if !ok {
				t.Fatalf("no %s wrapper", side)
			}
			if got := v.(*halfCloser).written.Load(); got != want {
				t.Errorf("bytes written through the %s wrapper: got %d, want %d", side, got, want)
			}
		}
	})

	for _, tc := range []struct {
		name string
		hook func(ctx context.Context, client, backend net.Conn) (net.Conn, net.Conn, error)
	}{
		{"error", func(_ context.Context, _, backend net.Conn) (net.Conn, net.Conn, error) {
			_, _ = io.WriteString(backend, "partial ")
			return nil, nil, errors.New("no credentials")
		}},
		{"timeout", func(_ context.Context, client, _ net.Conn) (net.Conn, net.Conn, error) {
			// The client sends nothing until it reads; the deadline ends it.
			_, err := io.ReadFull(client, make([]byte, 1))
			return client, client, err
		}},
		{"nil conn", func(_ context.Context, client, _ net.Conn) (net.Conn, net.Conn, error) {
			return client, nil, nil
		}},
	} {
		t.Run(tc.name+" closes both", func(t *testing.T) {
			backendGot := make(chan string, 1)
			backend := startBackend(t, func(c *net.TCPConn) {
				b, _ := io.ReadAll(c) // ends when the proxy closes
				backendGot <- string(b)
			})
			var rec dialRecorder
			cfg := testConfig(t)
			cfg.DialTimeout, cfg.HandoffTimeout = 100*time.Millisecond, 100*time.Millisecond
			cfg.DialFunc = rec.dial
			spare := startBackend(t, reply("spare"))
			p, addr := newRoute(t, cfg, tc.hook, Backend{Addr: backend}, Backend{Addr: spare})
			c := dial(t, addr)
			b, err := io.ReadAll(bufio.NewReader(c))
			if errors.Is(err, syscall.ECONNRESET) {
				err = nil
			}
			if err != nil || len(b) != 0 {
				t.Fatalf("client read: got %q, %v; want a close with no byte", b, err)
			}
			select {
			case <-backendGot:
			case <-time.After(10 * time.Second):
				t.Fatal("backend conn was not closed")
			}
			if got := rec.take(); !slices.Equal(got, []string{backend}) {
				t.Errorf("dialed %q, want only %q (no failover)", got, backend)
			}
			st := p.Status()[0]
			if st.HandshakeErrors != 1 || st.DialErrors != 0 {
				t.Errorf("HandshakeErrors, DialErrors: got %d, %d, want 1, 0", st.HandshakeErrors, st.DialErrors)
			}
			if bs := st.BackendStats[0]; bs.Ejected || bs.Active != 0 {
				t.Errorf("backend stats: got %+v, want not ejected, 0 active", bs)
			}
		})
	}
}
