package announce

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// These tests run real Servers on the loopback interface, which carries
// multicast within this network namespace without any host change.

const waitFor = 10 * time.Second

func loopback(t *testing.T) *net.Interface {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			return &ifi
		}
	}
	t.Skip("no loopback interface that is up")
	return nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func randomName(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// observer is an mDNS socket on lo that sees what the Servers send.
type observer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newObserver(t *testing.T, lo *net.Interface) *observer {
	t.Helper()
	conn, err := openSocket(lo.Index)
	if err != nil {
		t.Skipf("no mDNS socket on %s: %v", lo.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &observer{t: t, conn: conn}
}

// await reads packets until match accepts one, or fails the test.
func (o *observer) await(what string, match func(m *dns.Msg, src netip.AddrPort) bool) {
	o.t.Helper()
	o.conn.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, maxPacket)
	for {
		n, src, err := o.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			o.t.Fatalf("waiting for %s: %v", what, err)
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) == nil && match(&m, src) {
			return
		}
	}
}

func startServer(t *testing.T, lo *net.Interface, node, cluster string, gossip int, peers chan<- Peer) *Server {
	t.Helper()
	c := DefaultConfig()
	c.Node, c.Cluster, c.GossipPort = node, cluster, gossip
	c.Interfaces = []string{lo.Name}
	c.QueryMin = 20 * time.Millisecond
	c.Logger = testLogger(t)
	c.OnPeer = func(p Peer) {
		select {
		case peers <- p:
		default:
		}
	}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		if errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.EPERM) {
			t.Skipf("no multicast on %s: %v", lo.Name, err)
		}
		t.Fatal(err)
	}
	return s
}

func awaitPeer(t *testing.T, peers <-chan Peer, want Peer) {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case p := <-peers:
			if p == want {
				return
			}
		case <-timeout:
			t.Fatalf("peer %+v not reported", want)
		}
	}
}

// hasRR reports whether m has a record of type typ named name with TTL
// ttl (any TTL when ttl < 0).
func hasRR(m *dns.Msg, name string, typ uint16, ttl int) bool {
	for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
		h := rr.Header()
		if h.Rrtype == typ && equalName(h.Name, name) && (ttl < 0 || h.Ttl == uint32(ttl)) {
			return true
		}
	}
	return false
}

// noServerGoroutines fails if a Server goroutine is still running.
func noServerGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "announce.(*Server)") {
			t.Errorf("goroutine left after Close:\n%s", g)
		}
	}
}

func TestServersOnLoopback(t *testing.T) {
	lo := loopback(t)
	obs := newObserver(t, lo)
	id := randomName(t)
	cluster, nodeA, nodeB, svc := "test-"+id, "a-"+id, "b-"+id, "t"+id
	loAddr := netip.MustParseAddr("127.0.0.1")

	peersA, peersB := make(chan Peer, 16), make(chan Peer, 16)
	a := startServer(t, lo, nodeA, cluster, 7001, peersA)
	defer a.Close()
	a.SetServices([]Service{{Name: svcname.Must(svc), Port: 6379}})
	b := startServer(t, lo, nodeB, cluster, 7002, peersB)
	defer b.Close()
	if got := a.Interfaces(); len(got) != 1 || got[0] != lo.Name {
		t.Errorf("Interfaces() = %v", got)
	}

	t.Run("discovery", func(t *testing.T) {
		awaitPeer(t, peersA, Peer{Node: nodeB, Cluster: cluster, Addr: loAddr, GossipPort: 7002, Iface: lo.Name})
		awaitPeer(t, peersB, Peer{Node: nodeA, Cluster: cluster, Addr: loAddr, GossipPort: 7001, Iface: lo.Name})
		// QueryNow reports known peers again. b does not answer when it
		// multicast its records less than a second before (RFC 6762 §6),
		// so ask again as the mesh does, every 2s instead of 5s.
		want := Peer{Node: nodeB, Cluster: cluster, Addr: loAddr, GossipPort: 7002, Iface: lo.Name}
		deadline := time.Now().Add(waitFor)
	requery:
		for {
			a.QueryNow()
			timeout := time.After(2 * time.Second)
			for {
				select {
				case p := <-peersA:
					if p == want {
						break requery
					}
				case <-timeout:
					if time.Now().After(deadline) {
						t.Fatalf("peer %+v not reported after QueryNow", want)
					}
					continue requery
				}
			}
		}
	})

	t.Run("announcement", func(t *testing.T) {
		// A new service is announced twice, unasked.
		a.SetServices([]Service{{Name: svcname.Must(svc), Port: 6379}, {Name: svcname.Must("n" + id), Port: 80}})
		for i := range announceCount {
			obs.await("announcement", func(m *dns.Msg, _ netip.AddrPort) bool {
				ok := m.Response && hasRR(m, nodeA+"._n"+id+"._tcp.local.", dns.TypeSRV, 120) &&
					hasRR(m, "_services._dns-sd._udp.local.", dns.TypePTR, 120)
				if ok {
					t.Logf("announcement %d seen", i+1)
				}
				return ok
			})
		}
	})

	t.Run("legacy unicast", func(t *testing.T) {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		raw, err := conn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		raw.Control(func(fd uintptr) {
			err = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(lo.Index)})
		})
		if err != nil {
			t.Fatal(err)
		}
		q := query(4242, "_"+svc+"._tcp.local.", dns.TypePTR, dns.ClassINET)
		m, src := exchange(t, conn, q, mdnsGroup)
		if src.Port() != mdnsPort || m.Id != 4242 || len(m.Question) != 1 || m.Question[0] != q.Question[0] {
			t.Errorf("reply from %v, ID %d, question %v", src, m.Id, m.Question)
		}
		if !hasRR(m, "_"+svc+"._tcp.local.", dns.TypePTR, legacyTTL) || !hasRR(m, nodeA+"._"+svc+"._tcp.local.", dns.TypeSRV, legacyTTL) {
			t.Errorf("reply lacks PTR/SRV with TTL %d:\n%v", legacyTTL, m)
		}
	})

	t.Run("truncated query", func(t *testing.T) {
		// A TC query from port 5353, then its known answers in a packet
		// without questions: the answer comes 400-500ms later, without
		// them. (The TXT and SRV were last multicast at least a second
		// ago: the announcement subtest announced another service.)
		instance := nodeA + "._" + svc + "._tcp.local."
		a.mu.Lock()
		knownSRV, _ := a.socks[lo.Name].zone.answer(dns.Question{Name: instance, Qtype: dns.TypeSRV, Qclass: dns.ClassINET})
		a.mu.Unlock()
		if len(knownSRV) != 1 {
			t.Fatalf("SRV of %s: %v", instance, knownSRV)
		}
		tc := new(dns.Msg)
		tc.Truncated = true
		tc.Question = []dns.Question{
			{Name: instance, Qtype: dns.TypeSRV, Qclass: dns.ClassINET},
			{Name: instance, Qtype: dns.TypeTXT, Qclass: dns.ClassINET},
		}
		rest := &dns.Msg{Answer: knownSRV}
		start := time.Now()
		for _, m := range []*dns.Msg{tc, rest} {
			b, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := obs.conn.WriteToUDPAddrPort(b, mdnsGroup); err != nil {
				t.Fatal(err)
			}
		}
		obs.await("answer to the TC query", func(m *dns.Msg, _ netip.AddrPort) bool {
			if !m.Response || !inAnswer(m, instance, dns.TypeTXT) {
				return false
			}
			if waited := time.Since(start); waited < truncatedDelay {
				t.Errorf("answered after %v, want at least %v", waited, truncatedDelay)
			}
			if inAnswer(m, instance, dns.TypeSRV) {
				t.Errorf("answer repeats the known SRV:\n%v", m)
			}
			return true
		})
	})

	t.Run("goodbye on withdrawal", func(t *testing.T) {
		a.SetServices(nil)
		obs.await("goodbye", func(m *dns.Msg, _ netip.AddrPort) bool {
			return m.Response && hasRR(m, nodeA+"._"+svc+"._tcp.local.", dns.TypeSRV, 0) &&
				!hasRR(m, nodeA+"._ambassador._tcp.local.", dns.TypeSRV, -1)
		})
	})

	t.Run("goodbye on close", func(t *testing.T) {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		obs.await("goodbye", func(m *dns.Msg, _ netip.AddrPort) bool {
			return m.Response && hasRR(m, nodeB+"._ambassador._tcp.local.", dns.TypeTXT, 0) &&
				hasRR(m, "b-"+id+".local.", dns.TypeA, 0)
		})
		if err := b.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("direct unicast", func(t *testing.T) {
		// Like dig -p 5353 @127.0.0.1; only a is left to answer.
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		dst := netip.AddrPortFrom(loAddr, mdnsPort)
		m, src := exchange(t, conn, query(777, "a-"+id+".local.", dns.TypeA, dns.ClassINET), dst)
		if src != dst || m.Id != 777 || len(m.Question) != 1 || !hasRR(m, "a-"+id+".local.", dns.TypeA, legacyTTL) {
			t.Errorf("reply from %v:\n%v", src, m)
		}
	})

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	noServerGoroutines(t)
}

func TestRescanDropsAndAddsInterfaces(t *testing.T) {
	lo := loopback(t)
	c := DefaultConfig()
	c.Node, c.Cluster, c.GossipPort = "r-"+randomName(t), "rescan", 7000
	c.Logger = testLogger(t)
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ifaces := []ifaceInfo{{name: lo.Name, index: lo.Index, flags: net.FlagUp | net.FlagMulticast,
		addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}
	s.listIfaces = func() ([]ifaceInfo, error) { return ifaces, nil }
	// Drive rescan by hand, as run would, without starting run.
	s.started = true
	if got := s.rescan(); len(got) != 1 || len(s.Interfaces()) != 1 {
		t.Skipf("no mDNS socket on %s: rescan returned %v", lo.Name, got)
	}
	ifaces[0].addrs = []netip.Addr{netip.MustParseAddr("127.0.0.2")}
	if got := s.rescan(); len(got) != 1 || got[0].addr != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("address change: rescan returned %v", got)
	}
	saved := ifaces
	ifaces = nil
	if got := s.rescan(); len(got) != 0 || len(s.Interfaces()) != 0 {
		t.Errorf("vanished interface: rescan returned %v, interfaces %v", got, s.Interfaces())
	}
	ifaces = saved
	if got := s.rescan(); len(got) != 1 || len(s.Interfaces()) != 1 {
		t.Errorf("returning interface: rescan returned %v, interfaces %v", got, s.Interfaces())
	}
}

// exchange sends q from conn to dst, as a legacy (one-shot) querier does,
// and returns the first reply and where it came from, within waitFor.
func exchange(t *testing.T, conn *net.UDPConn, q *dns.Msg, dst netip.AddrPort) (*dns.Msg, netip.AddrPort) {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WriteToUDPAddrPort(wire, dst); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, maxPacket)
	n, src, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m, src
}
