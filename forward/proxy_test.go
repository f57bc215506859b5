package forward

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// topologies are the ways a client reaches a backend: one Proxy hop, or
// Proxy → Server (data port) → backend, in plain TCP or, with a cluster
// key, in mutually authenticated TLS between the two ambassadors.
var topologies = []struct {
	name  string
	chain func(t *testing.T, backend string) (clientAddr string)
}{
	{"direct", func(t *testing.T, backend string) string {
		p, al := newProxy(t, testConfig(t))
		p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Node: "a", Addr: backend}}}})
		return al.addr(t, "auto:svc")
	}},
	{"handoff", func(t *testing.T, backend string) string {
		s := newServer(t, testConfig(t), map[string]string{"svc": backend})
		p, al := newProxy(t, testConfig(t))
		p.Update([]Route{{Service: "svc", Listen: "auto:svc",
			Backends: []Backend{{Node: "b", Addr: s.Addr().String(), Service: "svc"}}}})
		return al.addr(t, "auto:svc")
	}},
	{"handoff-tls", func(t *testing.T, backend string) string {
		tp := newTLSPair(t)
		scfg := testConfig(t)
		scfg.ServerTLS = tp.server
		s := newServer(t, scfg, map[string]string{"svc": backend})
		pcfg := testConfig(t)
		pcfg.ClientTLS = tp.client
		p, al := newProxy(t, pcfg)
		p.Update([]Route{{Service: "svc", Listen: "auto:svc",
			Backends: []Backend{{Node: "b", Addr: s.Addr().String(), Service: "svc"}}}})
		return al.addr(t, "auto:svc")
	}},
}

func TestEndToEnd(t *testing.T) {
	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) {
			t.Run("client half-close, backend replies after EOF", func(t *testing.T) {
				backend := startBackend(t, func(c *net.TCPConn) {
					b, _ := io.ReadAll(c) // until the client's FIN
					_, _ = fmt.Fprintf(c, "got %d: %s", len(b), b)
				})
				if got, want := roundTrip(t, topo.chain(t, backend), "hello"), "got 5: hello"; got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			})

			t.Run("backend half-close, client keeps sending", func(t *testing.T) {
				backend, received := bannerBackend(t)
				c := dial(t, topo.chain(t, backend))
				b, err := io.ReadAll(c) // EOF proves the backend's FIN came through
				if err != nil || string(b) != "banner" {
					t.Fatalf("read: got %q, %v, want %q", b, err, "banner")
				}
				if _, err := io.WriteString(c, "after FIN"); err != nil {
					t.Fatalf("write after backend FIN: %v", err)
				}
				_ = c.CloseWrite()
				if got := <-received; got != "after FIN" {
					t.Errorf("backend got %q, want %q", got, "after FIN")
				}
			})

			t.Run("buffered close", func(t *testing.T) {
				// Bytes written just before the client closes still reach
				// the backend.
				received := make(chan string, 1)
				backend := startBackend(t, func(c *net.TCPConn) {
					b, _ := io.ReadAll(c)
					received <- string(b)
				})
				c := dial(t, topo.chain(t, backend))
				msg := strings.Repeat("last words ", 1000)
				if _, err := io.WriteString(c, msg); err != nil {
					t.Fatal(err)
				}
				c.Close()
				if got := <-received; got != msg {
					t.Errorf("backend got %d bytes, want %d", len(got), len(msg))
				}
			})

			t.Run("4 MiB each way", func(t *testing.T) {
				const size = 4 << 20
				up, down := randBytes(t, size), randBytes(t, size)
				upSum := make(chan [32]byte, 1)
				backend := startBackend(t, func(c *net.TCPConn) {
					var wg sync.WaitGroup
					wg.Go(func() {
						_, _ = c.Write(down)
						_ = c.CloseWrite()
					})
					h := sha256.New()
					_, _ = io.Copy(h, c)
					upSum <- [32]byte(h.Sum(nil))
					wg.Wait()
				})
				c := dial(t, topo.chain(t, backend))
				var wg sync.WaitGroup
				wg.Go(func() {
					_, _ = c.Write(up)
					_ = c.CloseWrite()
				})
				h := sha256.New()
				n, err := io.Copy(h, c)
				wg.Wait()
				if err != nil || n != size {
					t.Fatalf("read: got %d bytes, %v, want %d", n, err, size)
				}
				if [32]byte(h.Sum(nil)) != sha256.Sum256(down) {
					t.Error("backend → client bytes differ")
				}
				if <-upSum != sha256.Sum256(up) {
					t.Error("client → backend bytes differ")
				}
			})
		})
	}
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCopySeesTCPConns(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []string
	)
	testHookCopy = func(dst, src net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, fmt.Sprintf("%T→%T", src, dst))
	}
	t.Cleanup(func() { testHookCopy = nil }) // runs after the proxies' Shutdown

	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) {
			mu.Lock()
			calls = nil
			mu.Unlock()
			if got := roundTrip(t, topo.chain(t, startBackend(t, echo)), "x"); got != "x" {
				t.Fatalf("got %q, want %q", got, "x")
			}
			want := 2 // per hop: one call per direction
			if topo.name != "direct" {
				want = 4
			}
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != want {
				t.Fatalf("got %d copies %q, want %d", len(calls), calls, want)
			}
			if topo.name == "handoff-tls" {
				// The peer leg is TLS on both ambassadors, in both
				// directions; the local legs stay raw TCP.
				slices.Sort(calls)
				if want := []string{"*net.TCPConn→*tls.Conn", "*net.TCPConn→*tls.Conn", "*tls.Conn→*net.TCPConn", "*tls.Conn→*net.TCPConn"}; !slices.Equal(calls, want) {
					t.Errorf("copies: got %q, want %q", calls, want)
				}
				return
			}
			for _, c := range calls {
				if c != "*net.TCPConn→*net.TCPConn" {
					t.Errorf("copy %s: want *net.TCPConn on both sides (the raw-socket fast path)", c)
				}
			}
		})
	}
}

func TestFailover(t *testing.T) {
	good := startBackend(t, reply("good"))
	dead := closedAddr(t)
	refusing := newServer(t, testConfig(t), map[string]string{"other": good}).Addr().String()
	unavailable := newServer(t, testConfig(t), map[string]string{"svc": closedAddr(t)}).Addr().String()
	hop := newServer(t, testConfig(t), map[string]string{"svc": good}).Addr().String()

	for _, tc := range []struct {
		name     string
		backends []Backend
		want     string // "" = the client's conn is closed with no data
		dialErrs uint64
		refused  uint64 // of dialErrs, the handoffs a data port refused
	}{
		{"first refused", []Backend{{Addr: dead}, {Addr: good}}, "good", 1, 0},
		{"handoff unknown service", []Backend{{Addr: refusing, Service: "svc"}, {Addr: good}}, "good", 1, 1},
		{"handoff backend unavailable", []Backend{{Addr: unavailable, Service: "svc"}, {Addr: hop, Service: "svc"}}, "good", 1, 1},
		{"handoff to closed port", []Backend{{Addr: dead, Service: "svc"}, {Addr: hop, Service: "svc"}}, "good", 1, 0},
		{"all fail", []Backend{{Addr: dead}, {Addr: refusing, Service: "svc"}, {Addr: unavailable, Service: "svc"}}, "", 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, al := newProxy(t, testConfig(t))
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: tc.backends, Balance: BalanceFirst}})
			c := dial(t, al.addr(t, "auto:svc"))
			b, err := io.ReadAll(c)
			if err != nil || string(b) != tc.want {
				t.Fatalf("read: got %q, %v, want %q", b, err, tc.want)
			}
			waitFor(t, "dial error count", func() bool { return p.Status()[0].DialErrors == tc.dialErrs })
			if got := p.Status()[0].HandoffRefused; got != tc.refused {
				t.Errorf("HandoffRefused: got %d, want %d", got, tc.refused)
			}
		})
	}
}

func TestUpdateClosesListener(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes []Route
	}{
		{"route removed", nil},
		{"no backends", []Route{{Service: "svc", Listen: "auto:svc"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, al := newProxy(t, testConfig(t))
			p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: startBackend(t, echo)}}}})
			addr := al.addr(t, "auto:svc")
			c := dial(t, addr)
			ping(t, c, "before")

			p.Update(tc.routes)
			start := time.Now()
			_, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial after removal: got %v, want ECONNREFUSED", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusal took %v", d)
			}
			if st := p.Status(); len(st) != 0 {
				t.Errorf("Status: got %+v, want none", st)
			}
			ping(t, c, "after") // the open conn keeps working
		})
	}
}

// ping writes msg on an echoed conn and checks it comes back.
func ping(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
		t.Fatalf("echo: got %q, %v, want %q", b, err, msg)
	}
}

func TestUpdateSwapsBackends(t *testing.T) {
	p, al := newProxy(t, testConfig(t))
	route := Route{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Node: "a", Addr: startBackend(t, reply("A"))}}}
	p.Update([]Route{route})
	addr := al.addr(t, "auto:svc")
	if got := roundTrip(t, addr, ""); got != "A" {
		t.Fatalf("got %q, want %q", got, "A")
	}
	route.Backends[0] = Backend{Node: "b", Addr: startBackend(t, reply("B"))} // Update copied the old slice
	p.Update([]Route{route})
	if got := al.addr(t, "auto:svc"); got != addr {
		t.Fatalf("listener reopened: got %s, want %s", got, addr)
	}
	if got := roundTrip(t, addr, ""); got != "B" {
		t.Fatalf("got %q, want %q", got, "B")
	}
	st := p.Status()
	if len(st) != 1 || st[0].Backends[0].Node != "b" || st[0].Accepted != 2 {
		t.Errorf("Status: got %+v", st)
	}
}

func TestListenErrorRetried(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	t.Cleanup(func() { busy.Close() })

	cfg := testConfig(t)
	p, _ := newProxy(t, cfg)
	routes := []Route{{Service: "svc", Listen: addr, Backends: []Backend{{Addr: startBackend(t, reply("ok"))}}}}
	p.Update(routes)
	st := p.Status()
	if len(st) != 1 || st[0].State != StateError || !strings.Contains(st[0].Err, addr) {
		t.Fatalf("Status: got %+v, want state %q with an error naming %s", st, StateError, addr)
	}
	p.Update(routes) // still busy: still an error
	if st := p.Status(); st[0].State != StateError {
		t.Fatalf("State: got %q, want %q", st[0].State, StateError)
	}

	busy.Close()
	p.Update(routes)
	if st := p.Status(); st[0].State != StateListening || st[0].Err != "" {
		t.Fatalf("Status: got %+v, want state %q", st, StateListening)
	}
	if got := roundTrip(t, addr, ""); got != "ok" {
		t.Errorf("got %q, want %q", got, "ok")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"dial", func(c *Config) { c.DialTimeout = 0 }, "forward: config: DialTimeout 0s must be > 0"},
		{"handoff", func(c *Config) { c.HandoffTimeout = -1 }, "forward: config: HandoffTimeout -1ns must be > 0"},
		{"drain", func(c *Config) { c.DrainTimeout = -time.Second }, "forward: config: DrainTimeout -1s must be >= 0"},
		{"keepalive", func(c *Config) { c.KeepAlive = 0 }, "forward: config: KeepAlive 0s must be > 0, or negative for off"},
		{"user timeout", func(c *Config) { c.UserTimeout = 0 }, "forward: config: UserTimeout 0s must be > 0, or negative for off"},
		{"max conns", func(c *Config) { c.MaxConns = 0 }, "forward: config: MaxConns 0 must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mod(&cfg)
			_, err := New(cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("New: got %v, want %q", err, tc.want)
			}
			_, err = NewServer(cfg, func(svcname.Name) ([]string, bool) { return nil, false })
			if err == nil || err.Error() != tc.want {
				t.Errorf("NewServer: got %v, want %q", err, tc.want)
			}
		})
	}
	off := DefaultConfig()
	off.KeepAlive, off.UserTimeout, off.DrainTimeout = -1, -1, 0
	if _, err := New(off); err != nil {
		t.Errorf("New with keepalive and user timeout off: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	t.Run("drains", func(t *testing.T) {
		release := make(chan struct{})
		backend := startBackend(t, func(c *net.TCPConn) {
			<-release
			_, _ = io.WriteString(c, "done")
		})
		p, al := newProxy(t, testConfig(t))
		p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: backend}}}})
		addr := al.addr(t, "auto:svc")
		c := dial(t, addr)
		waitFor(t, "active conn", func() bool { return p.Status()[0].Active == 1 })

		errc := make(chan error, 1)
		go func() { errc <- p.Shutdown(context.Background()) }()
		waitFor(t, "listener closed", func() bool {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return errors.Is(err, syscall.ECONNREFUSED)
		})
		select {
		case err := <-errc:
			t.Fatalf("Shutdown returned %v before the open conn ended", err)
		default:
		}
		close(release)
		if b, err := io.ReadAll(c); err != nil || string(b) != "done" {
			t.Fatalf("read: got %q, %v, want %q", b, err, "done")
		}
		c.Close() // the client's side of the conn ends too, so the drain completes
		start := time.Now()
		if err := <-errc; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Shutdown took %v after the last conn ended; DrainTimeout is 5s", d)
		}
		if err := p.Shutdown(context.Background()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("second Shutdown: got %v, want net.ErrClosed", err)
		}
		p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: backend}}}})
		if st := p.Status(); len(st) != 0 {
			t.Errorf("Status after Update after Shutdown: got %+v, want none", st)
		}
	})

	for _, tc := range []struct {
		name    string
		drain   time.Duration
		ctx     func() context.Context
		wantErr error
	}{
		{"force-closes after DrainTimeout", 50 * time.Millisecond, context.Background, nil},
		{"force-closes when ctx ends", time.Hour, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, topo := range []string{"proxy", "server"} {
				t.Run(topo, func(t *testing.T) {
					cfg := testConfig(t)
					cfg.DrainTimeout = tc.drain
					hold := startBackend(t, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) })
					var (
						addr     string
						shutdown func(context.Context) error
					)
					if topo == "proxy" {
						p, al := newProxy(t, cfg)
						p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Addr: hold}}}})
						addr, shutdown = al.addr(t, "auto:svc"), p.Shutdown
					} else {
						s := newServer(t, cfg, map[string]string{"svc": hold})
						addr, shutdown = s.Addr().String(), s.Shutdown
					}
					c := dial(t, addr)
					if topo == "server" {
						hdr, _ := appendHandoff(nil, "svc")
						c.Write(hdr)
						if st := readStatus(t, c); st != statusOK {
							t.Fatalf("status: got %v, want ok", st)
						}
					} else {
						c.Write([]byte("x")) // reaches the backend only once connected
					}
					if err := shutdown(tc.ctx()); !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
						t.Fatalf("Shutdown: got %v, want %v", err, tc.wantErr)
					}
					if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("read after force-close: %v", err)
					}
					if err := shutdown(context.Background()); !errors.Is(err, net.ErrClosed) {
						t.Errorf("second Shutdown: got %v, want net.ErrClosed", err)
					}
				})
			}
		})
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("traffic", func(t *testing.T) {
		for _, topo := range topologies {
			addr := topo.chain(t, startBackend(t, echo))
			for range 5 {
				if got := roundTrip(t, addr, "x"); got != "x" {
					t.Fatalf("got %q, want %q", got, "x")
				}
			}
			dial(t, addr) // left open: Shutdown must end it
		}
	}) // the subtest's Cleanup shuts everything down
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: got %d, want <= %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func readStatus(t *testing.T, c net.Conn) handoffStatus {
	t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("read status: %v", err)
	}
	return handoffStatus(b[0])
}
