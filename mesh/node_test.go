package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/creds"
	"github.com/ambassador-mesh/ambassador/gossip"
	"github.com/ambassador-mesh/ambassador/internal/nodename"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/internal/testutil"
	"github.com/ambassador-mesh/ambassador/upstream"
	"github.com/miekg/dns"
)

var (
	freePort = testutil.FreePort
	waitFor  = testutil.WaitFor
)

// echoServer answers every connection with what it read, until EOF.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serveEcho(ln)
	return ln.Addr().(*net.TCPAddr).Port
}

type testNode struct {
	*Node
	cfg    Config
	cancel context.CancelFunc
	done   chan error
}

func startTestNode(t *testing.T, name string, mod func(*Config)) *testNode {
	t.Helper()
	cfg := testNodeConfig(t, name, mod)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{Node: n, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(func() { tn.stop(t) })
	select {
	case <-n.Ready():
	case err := <-tn.done:
		tn.done <- nil // for the cleanup's stop
		t.Fatalf("node %s: Run: %v", name, err)
	}
	return tn
}

// testNodeConfig is startTestNode's config: loopback, no mDNS, the local
// profile, free ports, then mod.
func testNodeConfig(t *testing.T, name string, mod func(*Config)) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Node = name
	cfg.Bind = "127.0.0.1"
	cfg.NoMDNS = true
	cfg.Profile = "local"
	cfg.GossipPort = freePort(t)
	cfg.DataPort = freePort(t)
	cfg.HTTP = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	cfg.Socket = shortSocketPath(t)
	cfg.DrainTimeout = time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	mod(&cfg)
	return cfg
}

func (tn *testNode) stop(t *testing.T) {
	tn.cancel()
	select {
	case err := <-tn.done:
		if err != nil {
			t.Errorf("node %s: Run: %v", tn.name, err)
		}
		tn.done <- nil // later stop calls return at once
	case <-time.After(20 * time.Second):
		t.Errorf("node %s did not stop", tn.name)
	}
}

func echoOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "ping" {
		return errors.New("echo: got " + strconv.Quote(string(b)))
	}
	return nil
}

// TestNodesOnLoopback runs two nodes in one process without mDNS: a client
// of node b reaches the service that node a announces, through both data
// planes, and the listener refuses once a has stopped.
func TestNodesOnLoopback(t *testing.T) {
	echo := echoServer(t)
	svcPort := freePort(t)
	a := startTestNode(t, "a", func(c *Config) {
		c.Announce = []Announce{{Name: "echo", Port: svcPort, Host: "127.0.0.1", TargetPort: echo}}
	})
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	b := startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Forward = []Forward{{Name: "echo", Listen: listen}}
	})

	waitFor(t, 15*time.Second, "echo through b", func() bool { return echoOnce(listen) == nil })

	// a hosts echo itself on another port than the target: it forwards too.
	local := net.JoinHostPort("127.0.0.1", strconv.Itoa(svcPort))
	waitFor(t, 5*time.Second, "echo through a's own listener", func() bool { return echoOnce(local) == nil })

	sv := b.ServicesView()
	if len(sv.Services) != 1 || sv.Services[0].Name != "echo" || sv.Services[0].State != "listening" || sv.Services[0].Nodes[0] != "a" {
		t.Fatalf("b's services view: got %+v", sv)
	}
	var m Members
	if err := Fetch(t.Context(), b.cfg.HTTP, "/v1/members", &m); err != nil || len(m.Members) != 2 || m.Node != "b" {
		t.Fatalf("b's members from the status API: got %+v, %v; want 2 members seen by b", m, err)
	}

	a.stop(t)
	waitFor(t, 10*time.Second, "b's listener to refuse", func() bool {
		err := echoOnce(listen)
		return errors.Is(err, syscall.ECONNREFUSED)
	})
}

// TestJoinRetriedAndBusyPort starts b with a seed that is not up yet (the
// join must be retried until a comes), and with the service's port already
// taken on b: that is not fatal, it shows in the services view, and the
// listener opens once the port is free.
func TestJoinRetriedAndBusyPort(t *testing.T) {
	echo := echoServer(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	aGossip := freePort(t)
	b := startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(aGossip))}
		c.Forward = []Forward{{Name: "echo", Listen: busyAddr}}
	})
	startTestNode(t, "a", func(c *Config) {
		c.GossipPort = aGossip
		c.Announce = []Announce{{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: echo}}
	})
	var sv Services
	waitFor(t, 15*time.Second, "b to join a and report the busy port", func() bool {
		sv = b.ServicesView()
		return len(sv.Services) == 1 && sv.Services[0].State == "error"
	})
	if !strings.Contains(sv.Services[0].Error, busyAddr) {
		t.Fatalf("busy port error %q does not name %s", sv.Services[0].Error, busyAddr)
	}
	busy.Close()
	waitFor(t, 15*time.Second, "b's listener to open once the port is free", func() bool { return echoOnce(busyAddr) == nil })
}

// TestStopLeavesNoGoroutines checks that Run returns only after everything
// the node started has stopped (memberlist's own goroutines end shortly
// after Shutdown, hence the polling).
func TestStopLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	a := startTestNode(t, "a", func(c *Config) {})
	b := startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
	})
	waitFor(t, 10*time.Second, "b to join a", func() bool { return len(b.MembersView().Members) == 2 })
	b.stop(t)
	a.stop(t)
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after stop:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStopDuringStart: a node told to stop (SIGTERM) before Run has
// started everything stops cleanly, as it does once running: Run returns
// nil (exit status 0), with mDNS as without, and leaves its ports and
// control socket free.
func TestStopDuringStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noMDNS bool
	}{
		{"without mdns", true},
		{"with mdns", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testNodeConfig(t, "a", func(c *Config) { c.NoMDNS = tc.noMDNS })
			n, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // the signal came while the node was starting
			if err := n.Run(ctx); err != nil {
				t.Fatalf("Run: got %v, want nil", err)
			}
			for _, addr := range []string{cfg.HTTP, net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.DataPort)), net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.GossipPort))} {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Fatalf("%s still taken after Run returned: %v", addr, err)
				}
				ln.Close()
			}
			if _, err := os.Lstat(cfg.Socket); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("control socket %s after Run returned: got %v, want it removed", cfg.Socket, err)
			}
		})
	}
}

// TestAnnounceAtRunTime adds and withdraws a service through the control
// API and through Reload, and checks that a peer's listener follows.
func TestAnnounceAtRunTime(t *testing.T) {
	echo := echoServer(t)
	a := startTestNode(t, "a", func(c *Config) {})
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Forward = []Forward{{Name: "echo", Listen: listen}}
	})
	spec := "echo:9=127.0.0.1:" + strconv.Itoa(echo)
	var resp AnnounceRequest
	if err := CallSocket(t.Context(), a.cfg.Socket, "POST", "/v1/announce", AnnounceRequest{Announce: spec}, &resp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "echo through b after the API announce", func() bool { return echoOnce(listen) == nil })

	var out map[string]string
	if err := CallSocket(t.Context(), a.cfg.Socket, "DELETE", "/v1/announce/echo", nil, &out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b to refuse after the drain", func() bool { return errors.Is(echoOnce(listen), syscall.ECONNREFUSED) })
	if err := CallSocket(t.Context(), a.cfg.Socket, "DELETE", "/v1/announce/echo", nil, &out); err == nil || !strings.Contains(err.Error(), "not announced") {
		t.Fatalf("second drain: got %v, want a not-announced error", err)
	}
	if err := CallSocket(t.Context(), a.cfg.Socket, "POST", "/v1/announce", AnnounceRequest{Announce: "bad"}, &resp); err == nil || !strings.Contains(err.Error(), "NAME[:PORT]") {
		t.Fatalf("bad announce: got %v, want a parse error", err)
	}

	cfg := a.cfg
	ann, _ := ParseAnnounce(spec)
	cfg.Announce = []Announce{ann}
	if err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "echo through b after the reload", func() bool { return echoOnce(listen) == nil })
	cfg.GossipPort++
	if err := a.Reload(cfg); err == nil || !strings.Contains(err.Error(), "gossip-port changed") {
		t.Fatalf("reload with a new gossip port: got %v, want a takes-a-restart error", err)
	}
}

// TestHealthWithdraws stops the service behind an announcement: its check
// fails, the peer's listener refuses; the service comes back, and so does
// the listener.
func TestHealthWithdraws(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	serveEcho(ln)
	a := startTestNode(t, "a", func(c *Config) {
		c.CheckInterval, c.CheckTimeout = 100*time.Millisecond, 50*time.Millisecond
		c.Announce = []Announce{{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: port}}
	})
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	b := startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Forward = []Forward{{Name: "echo", Listen: listen}}
	})
	waitFor(t, 10*time.Second, "echo through b", func() bool { return echoOnce(listen) == nil })

	ln.Close()
	// Withdrawn: offered by no node; b still lists a's instance, as failing
	// (a gossips its failing announcements), and never routes to it.
	waitFor(t, 10*time.Second, "echo withdrawn from b's catalog", func() bool {
		sv := b.ServicesView()
		return len(sv.Services) == 1 && len(sv.Services[0].Nodes) == 0 &&
			len(sv.Services[0].Instances) == 1 && sv.Services[0].Instances[0].Health == "failing"
	})
	// The reconcile loop closes the listener after the catalog change, not
	// in the same step: wait for that, then a new connection must be
	// refused, not accepted and reset.
	waitFor(t, 5*time.Second, "b's echo listener closed", func() bool {
		for _, ls := range b.proxy.Status() {
			if ls.Service == "echo" {
				return false
			}
		}
		return true
	})
	if err := echoOnce(listen); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("b's listener after the withdrawal: got %v, want connection refused", err)
	}
	waitFor(t, 5*time.Second, "a to show its instance failing", func() bool {
		sv := a.ServicesView()
		return len(sv.Services) == 1 && len(sv.Services[0].Nodes) == 0 && sv.Services[0].Instances[0].Health == "failing"
	})

	ln2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("port %d was taken meanwhile: %v", port, err)
	}
	serveEcho(ln2)
	t.Cleanup(func() { ln2.Close() })
	waitFor(t, 10*time.Second, "echo back through b", func() bool { return echoOnce(listen) == nil })
}

func serveEcho(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
}

// TestUpstreamSRV offers a service found through an SRV record: b reaches
// it through a, which resolves; when the record changes, new connections
// follow.
func TestUpstreamSRV(t *testing.T) {
	one, two := nameServer(t, "one"), nameServer(t, "two")
	dnsAddr, setPort := fakeSRV(t, "_web._tcp.lab.", one)
	a := startTestNode(t, "a", func(c *Config) {
		c.Upstream = []Upstream{{Name: "web", Port: 9, Spec: upstream.Spec{Kind: upstream.KindSRV, Name: "_web._tcp.lab."}}}
		c.Resolvers = []string{dnsAddr}
	})
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Forward = []Forward{{Name: "web", Listen: listen}}
	})
	waitFor(t, 10*time.Second, "web through b to reach one", func() bool { return readName(listen) == "one" })
	setPort(two)
	// The record's TTL is 1s, re-resolution is bounded below at 5s.
	waitFor(t, 15*time.Second, "web through b to follow the record to two", func() bool { return readName(listen) == "two" })
}

// nameServer answers every connection with its name and closes.
func nameServer(t *testing.T, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func readName(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// fakeSRV serves one SRV record (target 127.0.0.1, TTL 1s) on a UDP DNS
// server of its own; setPort changes the record's port.
func fakeSRV(t *testing.T, name string, port int) (addr string, setPort func(int)) {
	t.Helper()
	var cur atomic.Int64
	cur.Store(int64(port))
	addr = fakeSRVRecords(t, name, func() []srvRecord {
		return []srvRecord{{Priority: 10, Weight: 1, Port: int(cur.Load())}}
	})
	return addr, func(p int) { cur.Store(int64(p)) }
}

// srvRecord is one SRV record of fakeSRVRecords, its target 127.0.0.1.
type srvRecord struct{ Priority, Weight, Port int }

// fakeSRVRecords serves the SRV records recs returns for name (TTL 1s,
// every target host.lab. at 127.0.0.1) on a UDP DNS server of its own.
func fakeSRVRecords(t *testing.T, name string, recs func() []srvRecord) (addr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostA := func() dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: "host.lab.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
			A: net.IPv4(127, 0, 0, 1)}
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if len(r.Question) == 1 && r.Question[0].Name == name && r.Question[0].Qtype == dns.TypeSRV {
			for _, rec := range recs() {
				m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
					Priority: uint16(rec.Priority), Weight: uint16(rec.Weight), Port: uint16(rec.Port), Target: "host.lab."})
			}
			m.Extra = append(m.Extra, hostA())
		} else if len(r.Question) == 1 && r.Question[0].Name == "host.lab." && r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, hostA())
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestUpstreamSRVPriority: a client of the node that resolves an SRV
// upstream reaches the lowest priority's target, as a client of a peer
// does (RFC 2782: the lowest priority it can reach). Failover to the
// higher priority is forward's (TestBalancePriority).
func TestUpstreamSRVPriority(t *testing.T) {
	primary, backup := nameServer(t, "primary"), nameServer(t, "backup")
	dnsAddr := fakeSRVRecords(t, "_web._tcp.lab.", func() []srvRecord {
		return []srvRecord{{Priority: 20, Weight: 1, Port: backup}, {Priority: 10, Weight: 1, Port: primary}}
	})
	port := freePort(t)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	a := startTestNode(t, "a", func(c *Config) {
		c.Upstream = []Upstream{{Name: "web", Port: port, Spec: upstream.Spec{Kind: upstream.KindSRV, Name: "_web._tcp.lab."}}}
		c.Resolvers = []string{dnsAddr}
		c.Forward = []Forward{{Name: "web", Listen: listen}}
	})
	peerListen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Forward = []Forward{{Name: "web", Listen: peerListen}}
	})
	for _, at := range []struct{ who, addr string }{{"the resolving node", listen}, {"a peer", peerListen}} {
		waitFor(t, 10*time.Second, "web through "+at.who, func() bool { return readName(at.addr) != "" })
		got := map[string]int{}
		for range 20 {
			got[readName(at.addr)]++
		}
		if got["primary"] != 20 {
			t.Errorf("20 connections through %s: got %v, want all to primary (priority 10 before 20)", at.who, got)
		}
	}
}

// TestDrainOnStop stops a node while a connection through it is open: new
// connections are refused at once, the open one keeps working, and Run
// returns once it ends.
func TestDrainOnStop(t *testing.T) {
	echo := echoServer(t)
	a := startTestNode(t, "a", func(c *Config) {
		c.Announce = []Announce{{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: echo}}
	})
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	b := startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Forward = []Forward{{Name: "echo", Listen: listen}}
		c.DrainTimeout = 20 * time.Second
	})
	waitFor(t, 10*time.Second, "echo through b", func() bool { return echoOnce(listen) == nil })
	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip := func(msg string) error {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return errors.New("echo: got " + strconv.Quote(string(buf)))
		}
		return nil
	}
	if err := roundTrip("before"); err != nil {
		t.Fatal(err)
	}

	b.cancel() // what SIGTERM does
	waitFor(t, 10*time.Second, "b's listener to refuse new connections", func() bool {
		return errors.Is(echoOnce(listen), syscall.ECONNREFUSED)
	})
	if err := roundTrip("during the drain"); err != nil {
		t.Fatalf("open connection during the drain: %v", err)
	}
	select {
	case err := <-b.done:
		t.Fatalf("Run returned (%v) while a connection was still open", err)
	default:
	}
	conn.Close()
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup's stop
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the last connection closed")
	}
}

// TestKeyedNodes runs two nodes with one key: b reaches a's service over
// TLS between the ambassadors; a node without the key cannot join, and a
// node with another key neither.
func TestKeyedNodes(t *testing.T) {
	const key = "bGFiLWtleS1mb3ItYW1iYXNzYWRvci10ZXN0cy0zMmI="
	echo := echoServer(t)
	a := startTestNode(t, "a", func(c *Config) {
		c.Keys = []string{key}
		c.Announce = []Announce{{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: echo}}
	})
	seed := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	b := startTestNode(t, "b", func(c *Config) {
		c.Keys = []string{key}
		c.Join = seed
		c.Forward = []Forward{{Name: "echo", Listen: listen}}
	})
	waitFor(t, 10*time.Second, "echo through b over TLS", func() bool { return echoOnce(listen) == nil })
	sv := b.ServicesView()
	if len(sv.Services) != 1 || sv.Services[0].Instances[0].Conns == 0 {
		t.Fatalf("b's view: %+v, want a used instance of echo", sv)
	}
	for _, tc := range []struct {
		name string
		keys []string
	}{
		{"no key", nil},
		{"another key", []string{"nurHepAYiImKWoiiOzd/bTsZSGMPc67c9aK7Y1dgITc="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := startTestNode(t, "x", func(c *Config) { c.Keys = tc.keys; c.Join = seed })
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				if m := x.MembersView().Members; len(m) != 1 {
					t.Fatalf("x sees %+v, want only itself", m)
				}
				if s := x.ServicesView().Services; len(s) != 0 {
					t.Fatalf("x sees services %+v", s)
				}
				time.Sleep(100 * time.Millisecond)
			}
			x.stop(t)
		})
	}
}

// TestOperatorCANodes runs two nodes with the operator's CA and a key: a
// client of b reaches a's service over TLS. A client that holds a
// certificate from the same CA, but one that does not name this cluster
// (issued for something else, or for another cluster), gets nothing from
// a's data port; the same client with a certificate naming the cluster is
// served, so the refusal is the certificate's doing.
func TestOperatorCANodes(t *testing.T) {
	const key = "bGFiLWtleS1mb3ItYW1iYXNzYWRvci10ZXN0cy0zMmI="
	ours, theirs := testutil.NewCA(t, "ours"), testutil.NewCA(t, "theirs")
	echo := echoServer(t)
	a := startTestNode(t, "a", func(c *Config) {
		c.Keys = []string{key}
		c.TLSCA, c.TLSCert, c.TLSKey = ours.WriteFiles(t, "a")
		c.Announce = []Announce{{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: echo}}
	})
	seed := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	b := startTestNode(t, "", func(c *Config) { // the name comes from the certificate
		c.Keys = []string{key}
		c.TLSCA, c.TLSCert, c.TLSKey = ours.WriteFiles(t, "b")
		c.Join = seed
		c.Forward = []Forward{{Name: "echo", Listen: listen}}
	})
	if b.Name() != "b" {
		t.Fatalf("b's name: got %q, want %q from its certificate", b.Name(), "b")
	}
	waitFor(t, 10*time.Second, "echo through b over TLS with the operator CA", func() bool { return echoOnce(listen) == nil })
	if sv := b.ServicesView(); len(sv.Services) != 1 || sv.Services[0].Instances[0].Conns == 0 {
		t.Fatalf("b's view: %+v, want a used instance of echo", sv)
	}

	dataPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.DataPort))
	for _, tc := range []struct {
		name   string
		ca     *testutil.CA
		uris   []string
		wantOK bool
	}{
		{"same CA, naming the cluster", ours, []string{testutil.NodeURI("ambassador", "x")}, true},
		{"same CA, no URI SAN", ours, nil, false},
		{"same CA, another cluster", ours, []string{testutil.NodeURI("elsewhere", "x")}, false},
		{"same CA, another scheme", ours, []string{"spiffe://ambassador/x"}, false},
		{"another CA, naming the cluster", theirs, []string{testutil.NodeURI("ambassador", "x")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, certFile, keyFile := tc.ca.WriteFilesURI(t, "x", tc.uris...)
			err := rawHandoff(t, dataPort, certFile, keyFile, "echo")
			if tc.wantOK && err != nil {
				t.Fatalf("handoff to a: %v, want it served", err)
			}
			if !tc.wantOK && err == nil {
				t.Fatal("handoff to a: served, want the TLS handshake refused")
			}
		})
	}
}

// rawHandoff opens a TLS connection to a data port with the given client
// certificate (it does not check the server's), sends a handoff header for
// service and reads the status byte: nil when the server accepted it.
func rawHandoff(t *testing.T, addr, certFile, keyFile, service string) error {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
	})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// TLS 1.3: a refused client certificate shows up at the first read.
	if _, err := c.Write(append([]byte{'A', 'M', 'B', 1, byte(len(service))}, service...)); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	var status [1]byte
	if _, err := io.ReadFull(c, status[:]); err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	if status[0] != 0 {
		return fmt.Errorf("status %d", status[0])
	}
	return nil
}

// TestOperatorCABadFiles checks that New fails, naming the file or the
// flags, when the operator-CA setup cannot be used.
func TestOperatorCABadFiles(t *testing.T) {
	const key = "bGFiLWtleS1mb3ItYW1iYXNzYWRvci10ZXN0cy0zMmI="
	ours := testutil.NewCA(t, "ours")
	caFile, certFile, keyFile := ours.WriteFiles(t, "a")
	_, otherCert, otherKey := testutil.NewCA(t, "theirs").WriteFiles(t, "a")
	_, noSANCert, noSANKey := ours.WriteFilesURI(t, "nosan")
	_, elsewhereCert, elsewhereKey := ours.WriteFilesURI(t, "elsewhere", testutil.NodeURI("elsewhere", "a"))
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name          string
		ca, cert, key string
		node          string
		keys          []string
		wantErr       string
	}{
		{"missing CA file", missing, certFile, keyFile, "", []string{key}, missing},
		{"cert from another CA", caFile, otherCert, otherKey, "", []string{key}, otherCert},
		{"cert without URI SAN", caFile, noSANCert, noSANKey, "", []string{key}, noSANCert + " has no URI SAN ambassador://ambassador/NODE"},
		{"cert for another cluster", caFile, elsewhereCert, elsewhereKey, "", []string{key}, elsewhereCert + " has no URI SAN"},
		{"node other than the cert's", caFile, certFile, keyFile, "b", []string{key}, `node "b", but cert file ` + certFile + ` names node "a"`},
		// Without a key a stranger could join the gossip and rewrite the
		// catalog: refused, naming both flags.
		{"no key", caFile, certFile, keyFile, "", nil, "tls-ca: needs --key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Bind, cfg.NoMDNS, cfg.Node, cfg.Keys = "127.0.0.1", true, tc.node, tc.keys
			cfg.TLSCA, cfg.TLSCert, cfg.TLSKey = tc.ca, tc.cert, tc.key
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestCredentialsReload logs in to a password-protected service for the
// client, and picks up a rotated password from its file on Reload.
func TestCredentialsReload(t *testing.T) {
	var want atomic.Value
	want.Store("pw-1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // a Redis-like server: AUTH first, then echo
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				pw := want.Load().(string)
				auth := fmt.Sprintf("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(pw), pw)
				buf := make([]byte, len(auth))
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != auth {
					_, _ = io.WriteString(c, "-WRONGPASS invalid password\r\n")
					return
				}
				_, _ = io.WriteString(c, "+OK\r\n")
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	a := startTestNode(t, "a", func(c *Config) {
		c.Announce = []Announce{{Name: "kv", Port: 9, Host: "127.0.0.1", TargetPort: ln.Addr().(*net.TCPAddr).Port}}
	})
	cred := filepath.Join(t.TempDir(), "kv.cred")
	if err := os.WriteFile(cred, []byte("pw-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	b := startTestNode(t, "b", func(c *Config) {
		c.Join = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
		c.Forward = []Forward{{Name: "kv", Listen: listen}}
		c.Credentials = []creds.Spec{{Name: "kv", Proto: "redis", Path: cred}}
	})
	waitFor(t, 10*time.Second, "kv through b, logged in with pw-1", func() bool { return echoOnce(listen) == nil })

	want.Store("pw-2") // the password was rotated on the server...
	if err := echoOnce(listen); err == nil {
		t.Fatal("kv through b still works with the old password")
	}
	if err := os.WriteFile(cred, []byte("pw-2\n"), 0o600); err != nil { // ...and in the file
		t.Fatal(err)
	}
	if err := b.Reload(b.cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "kv through b, logged in with pw-2 after the reload", func() bool { return echoOnce(listen) == nil })
}

// TestKeyRotationReload rotates the cluster key of two running nodes with
// Reload, in the README's three steps: the service stays reachable and a
// service announced after the last step reaches the other node; a node
// with the old key alone is then kept out. Turning the key off on reload
// is refused as a restart-only change and keeps the running keys.
func TestKeyRotationReload(t *testing.T) {
	const oldKey, newKey = "bGFiLWtleS1mb3ItYW1iYXNzYWRvci10ZXN0cy0zMmI=", "nurHepAYiImKWoiiOzd/bTsZSGMPc67c9aK7Y1dgITc="
	echo := echoServer(t)
	a := startTestNode(t, "a", func(c *Config) {
		c.Keys = []string{oldKey}
		c.Announce = []Announce{{Name: "echo", Port: 9, Host: "127.0.0.1", TargetPort: echo}}
	})
	seed := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	b := startTestNode(t, "b", func(c *Config) {
		c.Keys = []string{oldKey}
		c.Join = seed
		c.Forward = []Forward{{Name: "echo", Listen: listen}, {Name: "late"}}
	})
	waitFor(t, 10*time.Second, "echo through b", func() bool { return echoOnce(listen) == nil })

	step := 0
	for _, keys := range [][]string{{oldKey, newKey}, {newKey, oldKey}, {newKey}} {
		for _, n := range []*testNode{a, b} {
			cfg := n.cfg
			cfg.Keys = keys
			if err := n.Reload(cfg); err != nil {
				t.Fatalf("%s: Reload with %d keys: %v", n.name, len(keys), err)
			}
		}
		if err := echoOnce(listen); err != nil {
			t.Fatalf("after the reload to %d keys: echo through b: %v", len(keys), err)
		}
		// The data plane does not use the key; gossip does: a new
		// announcement must still reach b after each step.
		step++
		name := "step" + strconv.Itoa(step)
		if err := a.Announce(Announce{Name: svcname.Must(name), Port: freePort(t), Host: "127.0.0.1", TargetPort: echo}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, name+" in b's catalog", func() bool {
			return slices.ContainsFunc(b.ServicesView().Services, func(s ServiceView) bool { return s.Name == name && len(s.Nodes) == 1 })
		})
	}
	late := freePort(t)
	cfg := a.cfg
	cfg.Keys = []string{newKey}
	cfg.Announce = append(slices.Clone(cfg.Announce), Announce{Name: "late", Port: late, Host: "127.0.0.1", TargetPort: echo})
	if err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a service announced under the new key, through b", func() bool {
		return echoOnce(net.JoinHostPort("127.0.0.1", strconv.Itoa(late))) == nil
	})

	stale := startTestNode(t, "stale", func(c *Config) { c.Keys = []string{oldKey}; c.Join = seed })
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if m := stale.MembersView().Members; len(m) != 1 {
			t.Fatalf("a node with the old key sees %+v, want only itself", m)
		}
		time.Sleep(100 * time.Millisecond)
	}

	cfg.Keys = nil
	if err := a.Reload(cfg); err == nil || !strings.Contains(err.Error(), "key changed") {
		t.Fatalf("Reload without keys: got %v, want key named as taking a restart", err)
	}
	if err := echoOnce(net.JoinHostPort("127.0.0.1", strconv.Itoa(late))); err != nil {
		t.Fatalf("after the refused key change: %v", err)
	}
}

// TestBindListensOnlyThere checks that --bind keeps the gossip and data
// ports off every other address: a node bound to 127.0.0.2 accepts there
// and refuses on 127.0.0.1 (all of 127/8 routes to lo, so only the
// listener's own address decides).
func TestBindListensOnlyThere(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this host: %v", err)
	}
	probe.Close()
	n := startTestNode(t, "bound", func(c *Config) { c.Bind = "127.0.0.2" })
	for _, p := range []struct {
		name string
		port int
	}{{"data", n.cfg.DataPort}, {"gossip", n.cfg.GossipPort}} {
		on := net.JoinHostPort("127.0.0.2", strconv.Itoa(p.port))
		c, err := net.DialTimeout("tcp", on, 2*time.Second)
		if err != nil {
			t.Fatalf("%s port on the bind address %s: %v, want it to accept", p.name, on, err)
		}
		c.Close()
		off := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
		if c, err := net.DialTimeout("tcp", off, 2*time.Second); err == nil {
			c.Close()
			t.Errorf("%s port on %s, not the bind address: accepted, want refused", p.name, off)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s port on %s: %v, want connection refused", p.name, off, err)
		}
	}
}

// TestNameTaken starts a second node named like a running one, at another
// address: instead of fighting over the name it refuses to run, with an
// error naming the name and the other node's address, and the first node
// keeps running under its name.
func TestNameTaken(t *testing.T) {
	// Both nodes are within the name conflict window, and memberlist tells
	// both of the conflict: the start times decide.
	a := startTestNode(t, "dup", func(*Config) {})
	aGossip := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort))

	cfg := DefaultConfig()
	cfg.Node = "dup"
	cfg.Bind, cfg.NoMDNS, cfg.Profile, cfg.HTTP = "127.0.0.1", true, "local", ""
	cfg.GossipPort, cfg.DataPort = freePort(t), freePort(t)
	cfg.DrainTimeout = time.Second
	cfg.Join = []string{aGossip}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	twin, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- twin.Run(ctx) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), `node name "dup" is already taken by a live member at `+aGossip) {
			t.Fatalf("twin's Run: got %v, want an error naming the name and %s", err, aGossip)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("twin still running after 15s, want it to refuse its taken name")
	}

	// The first node heard of the conflict before the twin did (it merges
	// the twin's state as the twin joins); had it taken that for its own
	// name being taken, it would be stopping now.
	select {
	case err := <-a.done:
		a.done <- err
		t.Fatalf("first node stopped (%v), want it running", err)
	case <-time.After(3 * time.Second):
	}
	ms := a.MembersView().Members
	if len(ms) != 1 || ms[0].Name != "dup" {
		t.Errorf("first node's members: %+v, want only itself", ms)
	}
}

// TestDefaultNodeName checks the default name: the host name plus 16 hex
// digits, a valid node name, stable for one address and port, and distinct
// across many cloned hosts that share a host name (with the old 4 digits,
// 2000 addresses collide almost surely).
func TestDefaultNodeName(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9-]+-[0-9a-f]{16}$`)
	seen := map[string]netip.Addr{}
	for i := range 2000 {
		addr := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		name := defaultNodeName(addr, 7946)
		if !re.MatchString(name) || nodename.Check(name) != nil {
			t.Fatalf("defaultNodeName(%s): %q, want host name-16 hex digits and a valid node name (%v)", addr, name, nodename.Check(name))
		}
		if again := defaultNodeName(addr, 7946); again != name {
			t.Fatalf("defaultNodeName(%s): %q then %q, want it stable", addr, name, again)
		}
		if prev, dup := seen[name]; dup {
			t.Fatalf("defaultNodeName: %s and %s both get %q", prev, addr, name)
		}
		seen[name] = addr
	}
	if a, b := defaultNodeName(netip.MustParseAddr("10.0.0.1"), 7946), defaultNodeName(netip.MustParseAddr("10.0.0.1"), 7947); a == b {
		t.Errorf("ports 7946 and 7947 on one address both get %q", a)
	}
}

// silentPeer is a gossip peer that accepts connections and never answers,
// like a host whose firewall lets the handshake through and drops the rest:
// a join to it lasts until memberlist's TCPTimeout.
func silentPeer(t *testing.T) string {
	t.Helper()
	addr, _ := silentPeerSeen(t)
	return addr
}

// silentPeerSeen is silentPeer plus a channel closed when it accepts its
// first connection (a join to it is in flight).
func silentPeerSeen(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	seen := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if conns == nil {
				close(seen)
			}
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), seen
}

// TestStopNotHeldUpByJoin stops a node, with the wan profile (a join lasts
// up to memberlist's 30s TCPTimeout), while its join to a silent seed is
// in flight: Run returns within the shutdown bound (drain timeout + 10s),
// not when the join gives up.
func TestStopNotHeldUpByJoin(t *testing.T) {
	seed, seen := silentPeerSeen(t)
	b := startTestNode(t, "b", func(c *Config) {
		c.Profile = "wan"
		c.Join = []string{seed}
		c.DrainTimeout = time.Second
	})
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no join to the silent seed within 10s")
	}
	stopAt := time.Now()
	b.cancel()
	bound := b.cfg.DrainTimeout + 10*time.Second
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup's stop
		t.Logf("b stopped %v after cancel", time.Since(stopAt).Round(time.Millisecond))
	case <-time.After(bound + 5*time.Second):
		t.Fatalf("b did not stop within %v (the shutdown bound %v plus 5s): it waits for the join (30s)", bound+5*time.Second, bound)
	}
}

// TestJoinNotHeldUpBySilentPeers gives a node eight seeds that never answer
// and one good one, with the lan profile's timers (a join lasts up to the
// 2s TCPTimeout). Structurally, joins are not serialised behind a silent
// seed: within three join timeouts of start, the good seed is joined AND
// every silent seed has been dialled. One join after another manages at
// most one silent seed per timeout (eight need 16s), so neither a lucky
// order (the good seed first) nor a slow machine makes a sequential loop
// pass. Stopping the node while joins to the silent seeds are in flight
// returns within the drain timeout plus the 2s join bound.
func TestJoinNotHeldUpBySilentPeers(t *testing.T) {
	a := startTestNode(t, "a", func(*Config) {})
	var seeds []string
	var seen []<-chan struct{}
	for range 8 {
		addr, c := silentPeerSeen(t)
		seeds, seen = append(seeds, addr), append(seen, c)
	}
	seeds = append(seeds, net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.GossipPort)))
	timeout := gossip.DefaultConfig().Memberlist.TCPTimeout
	start := time.Now()
	b := startTestNode(t, "b", func(c *Config) {
		c.Profile = "lan"
		c.Join = seeds
		c.DrainTimeout = time.Second
	})
	bound := 3 * timeout
	waitFor(t, bound-time.Since(start), "b to join the good seed a and dial all 8 silent seeds", func() bool {
		for _, c := range seen {
			select {
			case <-c:
			default:
				return false
			}
		}
		return len(b.MembersView().Members) == 2
	})
	t.Logf("b joined a and dialled every silent seed %v after start (bound %v)", time.Since(start).Round(time.Millisecond), bound)

	// The first joins to the silent seeds started with the one to a and
	// last 2s: stop while they are in flight.
	stopAt := time.Now()
	b.cancel()
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup's stop
		if took := time.Since(stopAt); took > b.cfg.DrainTimeout+3*time.Second {
			t.Errorf("b stopped %v after cancel, want within the drain timeout %v plus the 2s join bound", took, b.cfg.DrainTimeout)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("b did not stop within 15s")
	}
}
