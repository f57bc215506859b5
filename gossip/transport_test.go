package gossip

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func newTestTransport(t *testing.T) *transport {
	t.Helper()
	tr, err := newTransport("127.0.0.1", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	return tr
}

func recvPacket(t *testing.T, tr *transport) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet within 5s")
		return nil
	}
}

// Each packet is handed over in its own memory: memberlist may keep a
// packet's bytes after the next one arrived, so a reused read buffer
// would change a packet already delivered.
func TestTransportPacketsOwnTheirBytes(t *testing.T) {
	a, b := newTestTransport(t), newTestTransport(t)
	to := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port()))
	first, second := []byte("first packet, the longer one"), []byte("second")
	for _, msg := range [][]byte{first, second} {
		if _, err := a.WriteTo(msg, to); err != nil {
			t.Fatal(err)
		}
	}
	p1 := recvPacket(t, b)
	p2 := recvPacket(t, b)
	if !bytes.Equal(p1.Buf, first) || !bytes.Equal(p2.Buf, second) {
		t.Fatalf("packets %q, %q; want %q, %q", p1.Buf, p2.Buf, first, second)
	}
	if got, want := p1.From.String(), net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port())); got != want {
		t.Errorf("From = %s, want %s", got, want)
	}
	if cap(p1.Buf) > 4096 {
		t.Errorf("a %d-byte packet holds %d bytes of memory", len(p1.Buf), cap(p1.Buf))
	}
}

// What an idle node reads most is small packets; each must cost about its
// own size, not a 64 KiB buffer (memberlist's NetTransport allocates one
// per packet, which set an idle node's GC pace).
func TestTransportPacketAllocation(t *testing.T) {
	a, b := newTestTransport(t), newTestTransport(t)
	to := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port()))
	msg := bytes.Repeat([]byte("x"), 200)
	const n = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		if _, err := a.WriteTo(msg, to); err != nil {
			t.Fatal(err)
		}
		recvPacket(t, b)
	}
	runtime.ReadMemStats(&after)
	// Generous: the test's own timers and channels allocate too.
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 8<<10 {
		t.Errorf("%d bytes allocated per 200-byte packet, want under 8 KiB", per)
	}
}

func TestTransportStreams(t *testing.T) {
	a, b := newTestTransport(t), newTestTransport(t)
	c, err := a.DialTimeout(net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port())), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("push-pull")); err != nil {
		t.Fatal(err)
	}
	zc, ok := c.(zipConn)
	if !ok {
		t.Fatalf("dialed stream is a %T, want a zipConn (streamzip.go)", c)
	}
	zc.Conn.(interface{ CloseWrite() error }).CloseWrite()
	var s net.Conn
	select {
	case s = <-b.StreamCh():
	case <-time.After(5 * time.Second):
		t.Fatal("no stream within 5s")
	}
	defer s.Close()
	if _, ok := s.(zipConn); !ok {
		t.Fatalf("accepted stream is a %T, want a zipConn (streamzip.go)", s)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "push-pull" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestTransportAdvertise(t *testing.T) {
	tr := newTestTransport(t)
	for _, tc := range []struct {
		name     string
		ip       string
		port     int
		wantIP   string
		wantPort int
		wantErr  bool
	}{
		{name: "bound address and port", wantIP: "127.0.0.1", wantPort: tr.port()},
		{name: "advertise address, bound port", ip: "10.1.2.3", wantIP: "10.1.2.3", wantPort: tr.port()},
		{name: "advertise both", ip: "10.1.2.3", port: 7000, wantIP: "10.1.2.3", wantPort: 7000},
		{name: "not an IP", ip: "host", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip, port, err := tr.FinalAdvertiseAddr(tc.ip, tc.port)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %s:%d, want an error", ip, port)
				}
				return
			}
			if err != nil || ip.String() != tc.wantIP || port != tc.wantPort {
				t.Fatalf("got %s:%d, %v; want %s:%d", ip, port, err, tc.wantIP, tc.wantPort)
			}
		})
	}
	wild, err := newTransport("0.0.0.0", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Shutdown()
	if ip, port, err := wild.FinalAdvertiseAddr("", 0); err == nil {
		t.Errorf("unspecified bind, no advertise address: got %s:%d, want an error", ip, port)
	}
}

// Shutdown ends both loops, also when nobody reads the channels any more,
// and may be called again.
func TestTransportShutdown(t *testing.T) {
	a := newTestTransport(t)
	b, err := newTransport("127.0.0.1", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	to := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port()))
	if _, err := a.WriteTo([]byte("unread"), to); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan struct{})
	go func() {
		_ = b.Shutdown()
		_ = b.Shutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown still waiting after 5s")
	}
	again, err := newTransport("127.0.0.1", b.port(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("port %d not free after Shutdown: %v", b.port(), err)
	}
	_ = again.Shutdown()
}

// Packets cross between sockets of every kind a node binds: IPv4, the
// unspecified address (a dual-stack IPv6 socket, which sends to and reads
// IPv4 peers as ::ffff:a.b.c.d), and IPv6 loopback where the machine has
// it. From is always the peer's plain address, as memberlist's node table
// has it, and a peer given by host name is resolved.
func TestTransportPacketsEveryFamily(t *testing.T) {
	open := func(t *testing.T, ip string) *transport {
		t.Helper()
		tr, err := newTransport(ip, 0, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Skipf("bind %s: %v", ip, err)
		}
		t.Cleanup(func() { _ = tr.Shutdown() })
		return tr
	}
	for _, tc := range []struct {
		name       string
		from, to   string // bind addresses
		fromAddr   string // the sender's address as the receiver sees it
		toAddr     string // what the sender writes to (port appended)
		byHostName bool
	}{
		{name: "ipv4 to ipv4", from: "127.0.0.1", to: "127.0.0.1", fromAddr: "127.0.0.1", toAddr: "127.0.0.1"},
		{name: "ipv4 to dual-stack", from: "127.0.0.1", to: "0.0.0.0", fromAddr: "127.0.0.1", toAddr: "127.0.0.1"},
		{name: "dual-stack to ipv4", from: "0.0.0.0", to: "127.0.0.1", fromAddr: "127.0.0.1", toAddr: "127.0.0.1"},
		{name: "ipv6 to ipv6", from: "::1", to: "::1", fromAddr: "::1", toAddr: "::1"},
		{name: "by host name", from: "127.0.0.1", to: "127.0.0.1", fromAddr: "127.0.0.1", toAddr: "localhost", byHostName: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open(t, tc.from), open(t, tc.to)
			to := net.JoinHostPort(tc.toAddr, strconv.Itoa(b.port()))
			msg := []byte("ping " + tc.name)
			if _, err := a.WriteTo(msg, to); err != nil {
				if tc.byHostName {
					t.Skipf("localhost does not resolve to 127.0.0.1 here: %v", err)
				}
				t.Fatal(err)
			}
			p := recvPacket(t, b)
			if !bytes.Equal(p.Buf, msg) {
				t.Errorf("read %q, want %q", p.Buf, msg)
			}
			// Compared as netip values: net.IP prints ::ffff:127.0.0.1 as
			// 127.0.0.1, which would hide a mapped address.
			if got, want := p.From.(*net.UDPAddr).AddrPort(), netip.MustParseAddrPort(net.JoinHostPort(tc.fromAddr, strconv.Itoa(a.port()))); got != want {
				t.Errorf("From = %s, want %s", got, want)
			}
			// And back, to the address the packet came from.
			if _, err := b.WriteToAddress([]byte("ack"), memberlist.Address{Addr: p.From.String()}); err != nil {
				t.Fatal(err)
			}
			if back := recvPacket(t, a); string(back.Buf) != "ack" {
				t.Errorf("read back %q, want ack", back.Buf)
			}
		})
	}
}

// A send to an address family the socket cannot reach fails, naming the
// peer, rather than being dropped silently.
func TestTransportSendWrongFamily(t *testing.T) {
	a := newTestTransport(t) // IPv4 only
	_, err := a.WriteToAddress([]byte("x"), memberlist.Address{Addr: "[::1]:7946"})
	if err == nil || !strings.Contains(err.Error(), "::1") {
		t.Fatalf("send to [::1]:7946 from an IPv4 socket: %v, want an error naming the peer", err)
	}
}

// TestTransportListensWhereTold: bound to 0.0.0.0 (the default), the
// transport listens on IPv4 only, TCP and UDP: Go's "tcp" and "udp" would
// open [::], every IPv6 address as well, which a firewall written for
// IPv4 does not cover (internal/listennet, as every listener of a node).
func TestTransportListensWhereTold(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	tr, err := newTransport("0.0.0.0", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	port := strconv.Itoa(tr.port())
	if got := tr.tcp.Addr().String(); got != "0.0.0.0:"+port {
		t.Errorf("TCP listens on %s, want 0.0.0.0:%s", got, port)
	}
	if got := tr.udp.LocalAddr().String(); got != "0.0.0.0:"+port {
		t.Errorf("UDP listens on %s, want 0.0.0.0:%s", got, port)
	}
	if c, err := net.DialTimeout("tcp6", "[::1]:"+port, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("[::1]:%s connected, want refused", port)
	}
}
