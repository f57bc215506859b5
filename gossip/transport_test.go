package gossip

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
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
	c.(*net.TCPConn).CloseWrite()
	var s net.Conn
	select {
	case s = <-b.StreamCh():
	case <-time.After(5 * time.Second):
		t.Fatal("no stream within 5s")
	}
	defer s.Close()
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
