package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/listennet"
	"github.com/hashicorp/memberlist"
)

// transport is memberlist's network transport (UDP packets and TCP streams
// on one port) with one change that matters to an idle node: memberlist's
// NetTransport allocates a fresh 64 KiB buffer for every UDP packet it
// reads, a probe, an ack or a gossip message of a few hundred bytes. An idle
// node of a 100-host cluster reads several such packets a second, and that
// garbage alone set the pace of its garbage collector: a profile of an idle
// lab node spent about a tenth of its CPU in GC and in clearing those
// buffers. transport reads into one buffer per socket and hands memberlist
// a copy of exactly the packet's bytes (memberlist may keep a packet's
// bytes, so the read buffer cannot be handed out).
//
// Everything else follows NetTransport: the same port for UDP and TCP, a
// 2 MiB socket receive buffer where the kernel allows, unbuffered channels.
type transport struct {
	tcp      *net.TCPListener
	udp      *net.UDPConn
	io       *udpIO // reads and writes udp (udpio_linux.go: without waking sysmon)
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	log      *slog.Logger
	closed   atomic.Bool
	done     chan struct{} // closed by Shutdown
	wg       sync.WaitGroup

	// dialCtx is canceled by abortStreams: dials in flight and later fail.
	dialCtx context.Context
	abort   context.CancelFunc
	// streamMu guards streams, the streams this node opened
	// (DialAddressTimeout) and has not closed, which abortStreams closes.
	// A stream is added only while dialCtx is live, checked under it.
	streamMu sync.Mutex
	streams  map[*outConn]struct{}
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

const (
	// maxPacket is the largest UDP payload; memberlist's packets are far
	// smaller (UDPBufferSize, 1400 bytes by default).
	maxPacket = 65536
	// udpRecvBuf is the socket receive buffer asked for, halved until the
	// kernel accepts it, as memberlist does: a burst of gossip must not be
	// dropped while the reader is busy.
	udpRecvBuf = 2 << 20
	// bindTries: with port 0 the kernel picks the TCP port, and the same
	// UDP port may be taken; memberlist retries 10 times too.
	bindTries = 10
)

// newTransport binds TCP and UDP on ip:port (port 0: a free port, the same
// for both) and starts reading.
func newTransport(ip string, port int, log *slog.Logger) (*transport, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("gossip: transport: bind address %q: %w", ip, err)
	}
	tries := 1
	if port == 0 {
		tries = bindTries
	}
	for i := 0; ; i++ {
		t, err := bindTransport(addr, port, log)
		if err == nil {
			return t, nil
		}
		if i+1 >= tries || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
}

func bindTransport(ip netip.Addr, port int, log *slog.Logger) (*transport, error) {
	at := netip.AddrPortFrom(ip, uint16(port))
	tcp, err := net.ListenTCP(listennet.Network("tcp", at.String()), net.TCPAddrFromAddrPort(at))
	if err != nil {
		return nil, fmt.Errorf("gossip: transport: listen tcp %s: %w", net.JoinHostPort(ip.String(), strconv.Itoa(port)), err)
	}
	bound := tcp.Addr().(*net.TCPAddr).AddrPort()
	udp, err := net.ListenUDP(listennet.Network("udp", at.String()), net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, bound.Port())))
	if err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("gossip: transport: listen udp %s: %w", net.JoinHostPort(ip.String(), strconv.Itoa(int(bound.Port()))), err)
	}
	for size := udpRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	uio, err := newUDPIO(udp)
	if err != nil {
		_ = tcp.Close()
		_ = udp.Close()
		return nil, err
	}
	t := &transport{
		tcp:      tcp,
		udp:      udp,
		io:       uio,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		log:      log,
		done:     make(chan struct{}),
		streams:  make(map[*outConn]struct{}),
	}
	t.dialCtx, t.abort = context.WithCancel(context.Background())
	t.wg.Add(2)
	go t.acceptLoop()
	go t.readLoop()
	return t, nil
}

// port is the bound port, TCP and UDP.
func (t *transport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is the address peers reach this node at: ip if set
// (Config.AdvertiseAddr; New requires it when the bind address is
// unspecified), else the bound address, and the bound port when port is 0.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if port == 0 {
		port = t.port()
	}
	if ip == "" {
		a := t.tcp.Addr().(*net.TCPAddr).IP
		if a.IsUnspecified() {
			return nil, 0, errors.New("gossip: transport: bound to an unspecified address and no advertise address set")
		}
		return a, port, nil
	}
	a := net.ParseIP(ip)
	if a == nil {
		return nil, 0, fmt.Errorf("gossip: transport: advertise address %q is not an IP", ip)
	}
	if a4 := a.To4(); a4 != nil {
		a = a4
	}
	return a, port, nil
}

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends one packet. Peers' addresses are IP:port literals
// (memberlist's node table), parsed without allocating; a name is resolved.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ap, err := netip.ParseAddrPort(a.Addr)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", a.Addr)
		if rerr != nil {
			return time.Time{}, rerr
		}
		ap = ua.AddrPort()
	}
	err = t.io.send(b, ap)
	return time.Now(), err
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// IngestPacket reads a packet that arrived over a stream (memberlist's
// fallback for packets over TCP) and hands it on.
func (t *transport) IngestPacket(conn net.Conn, addr net.Addr, now time.Time, shouldClose bool) error {
	if shouldClose {
		defer conn.Close()
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, conn); err != nil {
		return fmt.Errorf("gossip: transport: read packet from %s: %w", addr, err)
	}
	if buf.Len() < 1 {
		return fmt.Errorf("gossip: transport: empty packet from %s", addr)
	}
	t.packetCh <- &memberlist.Packet{Buf: buf.Bytes(), From: addr, Timestamp: now}
	return nil
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(t.dialCtx, "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	oc := &outConn{TCPConn: c.(*net.TCPConn), t: t}
	t.streamMu.Lock()
	aborted := t.dialCtx.Err() != nil
	if !aborted {
		t.streams[oc] = struct{}{}
	}
	t.streamMu.Unlock()
	if aborted {
		_ = c.Close()
		return nil, fmt.Errorf("gossip: transport: dial %s: %w", a.Addr, net.ErrClosed)
	}
	return zipConn{oc}, nil // push/pull states go out compressed (streamzip.go)
}

// abortStreams closes the streams this node opened and makes every dial,
// running or later, fail. memberlist bounds a stream it opens (a join's
// push/pull, a reliable user message) only by TCPTimeout, 30 s with the
// WAN profile, and cannot cancel one: a peer that accepts and never
// answers held a join that long, and Cluster.Shutdown, which waits for
// the goroutines that make such calls, with it. It may be called more
// than once.
func (t *transport) abortStreams() {
	t.abort() // before the lock: a dial that takes it later sees dialCtx done
	t.streamMu.Lock()
	open := make([]*outConn, 0, len(t.streams))
	for oc := range t.streams {
		open = append(open, oc)
	}
	t.streamMu.Unlock()
	for _, oc := range open {
		_ = oc.Close()
	}
}

// outConn is a stream this node opened, tracked until it is closed so
// that abortStreams can end it.
type outConn struct {
	*net.TCPConn
	t *transport
}

func (c *outConn) Close() error {
	c.t.streamMu.Lock()
	delete(c.t.streams, c)
	c.t.streamMu.Unlock()
	return c.TCPConn.Close()
}

func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

func (t *transport) IngestStream(conn net.Conn) error {
	t.streamCh <- conn
	return nil
}

// Shutdown closes both sockets and waits for the two loops to end. It may
// be called more than once. memberlist calls it first in its own Shutdown,
// while its handlers still read the channels; a loop still handing over a
// packet or a stream when nobody reads any more (memberlist.Create failed)
// gives up on done.
func (t *transport) Shutdown() error {
	if t.closed.Swap(true) {
		return nil
	}
	t.abort()
	close(t.done)
	_ = t.tcp.Close()
	_ = t.udp.Close()
	t.wg.Wait()
	return nil
}

// acceptLoop hands accepted streams to memberlist. Accept errors other
// than the close back off up to a second, as NetTransport's do.
func (t *transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.closed.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Error("gossip: accept", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-t.done:
				return
			}
			continue
		}
		delay = 0
		select {
		case t.streamCh <- zipConn{conn}:
		case <-t.done:
			_ = conn.Close()
			return
		}
	}
}

// readLoop reads packets into one buffer and hands memberlist a copy of
// each.
func (t *transport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, from, err := t.io.recv(buf)
		now := time.Now()
		if err != nil {
			if t.closed.Load() {
				return
			}
			t.log.Error("gossip: read packet", "err", err)
			continue
		}
		if n < 1 {
			continue // an empty datagram carries no message
		}
		p := &memberlist.Packet{Buf: bytes.Clone(buf[:n]), From: net.UDPAddrFromAddrPort(from), Timestamp: now}
		select {
		case t.packetCh <- p:
		case <-t.done:
			return
		}
	}
}
