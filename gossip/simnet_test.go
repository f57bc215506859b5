package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// simNet is the network of a simulation of many memberlist instances in
// one process, after memberlist's MockNetwork. Packets (memberlist's UDP)
// stay in memory: a packet is one buffered channel send, and a packet to a
// full or stopped receiver is dropped (as UDP drops it) instead of
// blocking the sender. Streams (push/pull, join) are real TCP connections
// on loopback, each node with its own listener, as memberlist's
// NetTransport has: a node that is killed (kill) closes its listener, so
// a dial to it is refused by the kernel, exactly what the product's
// suspect check (suspect.go) dials for on a real host whose process died,
// while a live node's listener accepts even when its goroutines are
// starved. It counts the bytes each node sends, packets and streams apart,
// and the packets it drops.
type simNet struct {
	mu    sync.RWMutex
	nodes map[string]*simTransport // by "127.0.0.1:port"; guarded by mu
	// cuts holds the pairs of nodes that cannot reach each other, both
	// ways (split); guarded by mu.
	cuts map[[2]string]bool
}

// split cuts (cut) or heals (!cut) the link between a and b, both ways,
// as a partition of the network between two hosts does: packets between
// them are lost and a dial from one to the other times out. Both keep
// running, and each keeps its links to every other node.
func (n *simNet) split(a, b *simTransport, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cuts == nil {
		n.cuts = make(map[[2]string]bool)
	}
	for _, k := range [][2]string{{a.addr, b.addr}, {b.addr, a.addr}} {
		if cut {
			n.cuts[k] = true
		} else {
			delete(n.cuts, k)
		}
	}
}

// cut reports whether from and to are split.
func (n *simNet) cut(from, to string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cuts[[2]string{from, to}]
}

// simPacketBuffer is each node's receive queue in packets. A receiver that
// falls this far behind loses packets, as a full UDP socket buffer does
// (a Linux default of 208 KiB holds about 150 full 1,400-byte packets,
// more small ones).
const simPacketBuffer = 1024

// newTransport opens a node's stream listener on a free loopback port,
// which is also the port its packets are addressed to.
func (n *simNet) newTransport(tb testing.TB) *simTransport {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("sim: listen: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	t := &simTransport{net: n, port: port, addr: ln.Addr().String(), ln: ln,
		incoming: make(chan *memberlist.Packet, simPacketBuffer), streams: make(chan net.Conn), stop: make(chan struct{})}
	n.mu.Lock()
	if n.nodes == nil {
		n.nodes = make(map[string]*simTransport)
	}
	n.nodes[t.addr] = t
	n.mu.Unlock()
	t.accepting.Add(1)
	go t.accept()
	return t
}

func (n *simNet) peer(addr string) (*simTransport, bool) {
	n.mu.RLock()
	t, ok := n.nodes[addr]
	n.mu.RUnlock()
	return t, ok && !t.down.Load()
}

// simTraffic is what the transports of a simNet carried: bytes sent in
// packets and on streams, packets sent, packets dropped at a full receive
// queue and streams opened (memberlist opens one per push/pull or join).
type simTraffic struct {
	packetBytes, streamBytes, packets, dropped, dials int64
}

func (a simTraffic) sub(b simTraffic) simTraffic {
	return simTraffic{a.packetBytes - b.packetBytes, a.streamBytes - b.streamBytes, a.packets - b.packets, a.dropped - b.dropped, a.dials - b.dials}
}

// traffic sums the counters of every transport of the net.
func (n *simNet) traffic() simTraffic {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var s simTraffic
	for _, t := range n.nodes {
		s.packetBytes += t.packetBytes.Load()
		s.streamBytes += t.streamBytes.Load()
		s.packets += t.packets.Load()
		s.dropped += t.dropped.Load()
		s.dials += t.dials.Load()
	}
	return s
}

// simTransport is one node's memberlist.Transport on a simNet.
type simTransport struct {
	net      *simNet
	port     int
	addr     string
	ln       net.Listener            // streams; closed by kill and Shutdown
	incoming chan *memberlist.Packet // buffered; full: dropped
	streams  chan net.Conn           // accepted streams, handed to memberlist
	down     atomic.Bool             // killed
	// drop, when set, is a filter on packets to this node: it loses
	// those for which it returns true (a test's selective loss).
	drop      atomic.Pointer[func([]byte) bool]
	stop      chan struct{} // closed by Shutdown
	once      sync.Once
	accepting sync.WaitGroup // the accept goroutine

	packetBytes atomic.Int64 // bytes this node sent in packets
	streamBytes atomic.Int64 // bytes this node wrote on streams
	packets     atomic.Int64 // packets this node sent
	dropped     atomic.Int64 // packets to this node dropped: its queue was full
	dials       atomic.Int64 // streams this node opened
	// byClass splits packetBytes by what the bytes carried (simClassify).
	byClass [simClasses]atomic.Int64
}

// What a packet's bytes carried, see simClassify.
const (
	simProbe   = iota // ping, indirect ping, ack, nack: the failure detector
	simMember         // alive, suspect, dead: memberlist's own broadcasts
	simRecord         // a record (user message kindRecord): relay.go's broadcasts
	simUserMsg        // other user messages: want, refused, direct sends
	simFraming        // CRC, label, compound headers, anything unparsed
	simClasses
)

var simClassNames = [simClasses]string{"probe", "member", "record", "user", "framing"}

// simClassify splits a memberlist packet's bytes by message type: an
// optional label and CRC header, then one message or a compound of them
// (memberlist v0.7.0's net.go framing; compression is off in our config).
func simClassify(b []byte) (out [simClasses]int) {
	const (
		compoundMsg = 7
		userMsg     = 8
		hasCrcMsg   = 12
		hasLabelMsg = 244
	)
	if len(b) >= 2 && b[0] == hasLabelMsg && len(b) >= 2+int(b[1]) {
		out[simFraming] += 2 + int(b[1])
		b = b[2+int(b[1]):]
	}
	if len(b) >= 5 && b[0] == hasCrcMsg {
		out[simFraming] += 5
		b = b[5:]
	}
	one := func(m []byte) {
		if len(m) == 0 {
			return
		}
		switch m[0] {
		case 0, 1, 2, 11:
			out[simProbe] += len(m)
		case 3, 4, 5:
			out[simMember] += len(m)
		case userMsg:
			if len(m) >= 3 && m[2] == kindRecord {
				out[simRecord] += len(m)
			} else {
				out[simUserMsg] += len(m)
			}
		default:
			out[simFraming] += len(m)
		}
	}
	if len(b) < 2 || b[0] != compoundMsg {
		one(b)
		return out
	}
	n := int(b[1])
	if len(b) < 2+2*n {
		out[simFraming] += len(b)
		return out
	}
	out[simFraming] += 2 + 2*n
	rest := b[2+2*n:]
	for i := range n {
		l := int(b[2+2*i])<<8 | int(b[3+2*i])
		if l > len(rest) {
			break
		}
		one(rest[:l])
		rest = rest[l:]
	}
	out[simFraming] += len(rest)
	return out
}

var _ memberlist.Transport = (*simTransport)(nil)

type simAddr string

func (a simAddr) Network() string { return "sim" }
func (a simAddr) String() string  { return string(a) }

// FinalAdvertiseAddr is 127.0.0.1 in its 4-byte form, as the product's
// transport advertises an IPv4 address: memberlist sends it in every
// alive message and in every member's entry of a push/pull, where the
// 16-byte form costs 12 bytes more each (12 KB per push/pull at 1,000).
func (t *simTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.IPv4(127, 0, 0, 1).To4(), t.port, nil
}

func (t *simTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	if t.down.Load() {
		return now, nil
	}
	t.packets.Add(1)
	t.packetBytes.Add(int64(len(b)))
	for c, n := range simClassify(b) {
		if n > 0 {
			t.byClass[c].Add(int64(n))
		}
	}
	dst, ok := t.net.peer(addr)
	if !ok || t.net.cut(t.addr, addr) {
		return now, nil // lost, as UDP to a dead or unreachable host is
	}
	if drop := dst.drop.Load(); drop != nil && (*drop)(b) {
		return now, nil
	}
	// memberlist may reuse b once WriteTo returns.
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: simAddr(t.addr), Timestamp: now}
	select {
	case dst.incoming <- p:
	default:
		dst.dropped.Add(1)
	}
	return now, nil
}

func (t *simTransport) PacketCh() <-chan *memberlist.Packet { return t.incoming }

// DialTimeout opens a TCP stream to addr's listener. A killed node cannot
// dial; a dial to a killed node is refused by the kernel.
func (t *simTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.down.Load() {
		return nil, fmt.Errorf("sim: dial %s from a killed node: %w", addr, net.ErrClosed)
	}
	if t.net.cut(t.addr, addr) {
		// What a dial across a partition gets, without the wait.
		return nil, fmt.Errorf("sim: dial %s across a partition: %w", addr, os.ErrDeadlineExceeded)
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	t.dials.Add(1)
	return zipConn{&countConn{Conn: c, n: &t.streamBytes}}, nil // as the product's transport
}

// accept hands accepted streams to memberlist until the listener closes.
func (t *simTransport) accept() {
	defer t.accepting.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return // closed by kill or Shutdown
		}
		select {
		case t.streams <- zipConn{&countConn{Conn: c, n: &t.streamBytes}}:
		case <-t.stop:
			c.Close()
			return
		}
	}
}

func (t *simTransport) StreamCh() <-chan net.Conn { return t.streams }

// kill makes the node behave like a host whose process was SIGKILLed:
// packets to and from it are lost, and its port refuses connections.
// memberlist on it keeps running, cut off, until Shutdown.
func (t *simTransport) kill() {
	t.down.Store(true)
	t.ln.Close()
}

func (t *simTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.stop)
		t.ln.Close()
		t.accepting.Wait()
	})
	return nil
}

// countConn counts the bytes written through it.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// failureLog counts memberlist's failure-detector lines of every node of a
// simulation: "Suspect X has failed" (a probe of X got no ack) and
// "Marking X as failed" (a suspicion of X timed out on the node that logs
// it), by the node that logged it and X. Each node logs through its own
// handler (node); every other line is dropped.
type failureLog struct {
	mu    sync.Mutex
	lines map[failureLine]int // guarded by mu
}

type failureLine struct {
	by, about string
	mark      bool // "Marking", else "Suspect"
}

func newFailureLog() *failureLog {
	return &failureLog{lines: make(map[failureLine]int)}
}

// node returns the slog.Handler for the node named by.
func (f *failureLog) node(by string) slog.Handler { return failureHandler{f: f, by: by} }

type failureHandler struct {
	f  *failureLog
	by string
}

func (h failureHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h failureHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h failureHandler) WithGroup(string) slog.Handler                { return h }

func (h failureHandler) Handle(_ context.Context, r slog.Record) error {
	l := failureLine{by: h.by}
	var rest string
	if s, ok := strings.CutPrefix(r.Message, "Suspect "); ok {
		rest = s
	} else if s, ok := strings.CutPrefix(r.Message, "Marking "); ok && strings.Contains(s, " as failed") {
		rest, l.mark = s, true
	} else {
		return nil
	}
	l.about, _, _ = strings.Cut(rest, " ")
	h.f.mu.Lock()
	h.f.lines[l]++
	h.f.mu.Unlock()
	return nil
}

// failureCounts is a snapshot of a failureLog: lines and distinct nodes
// they were about.
type failureCounts struct {
	suspectLines, suspectNodes, markLines, markNodes int
}

// counts returns the lines logged so far, leaving out those logged by or
// about except (a node cut off suspects everyone else).
func (f *failureLog) counts(except string) failureCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	var c failureCounts
	suspects, marks := make(map[string]bool), make(map[string]bool)
	for l, n := range f.lines {
		if except != "" && (l.by == except || l.about == except) {
			continue
		}
		if l.mark {
			c.markLines += n
			marks[l.about] = true
		} else {
			c.suspectLines += n
			suspects[l.about] = true
		}
	}
	c.suspectNodes, c.markNodes = len(suspects), len(marks)
	return c
}

// reset forgets the lines counted so far.
func (f *failureLog) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.lines)
}

// TestSimNet checks the simulation's transport itself: bytes are counted
// per sender, a full receive queue drops (and counts) instead of blocking,
// and a killed node neither sends nor receives, and its port refuses
// connections as a dead process's does (the product's suspect check relies
// on exactly that error).
func TestSimNet(t *testing.T) {
	sn := &simNet{}
	a, b := sn.newTransport(t), sn.newTransport(t)
	defer a.Shutdown()
	defer b.Shutdown()

	for range simPacketBuffer + 1 {
		if _, err := a.WriteTo([]byte("hello"), b.addr); err != nil {
			t.Fatal(err)
		}
	}
	got := sn.traffic()
	want := simTraffic{packetBytes: 5 * (simPacketBuffer + 1), packets: simPacketBuffer + 1, dropped: 1}
	if got != want {
		t.Fatalf("traffic after %d packets into a queue of %d: %+v, want %+v", simPacketBuffer+1, simPacketBuffer, got, want)
	}
	if p := <-b.PacketCh(); string(p.Buf) != "hello" || p.From.String() != a.addr {
		t.Fatalf("received %q from %s, want \"hello\" from %s", p.Buf, p.From, a.addr)
	}

	done := make(chan error, 1)
	go func() {
		c, err := b.DialTimeout(a.addr, time.Second)
		if err == nil {
			_, err = c.Write([]byte("stream"))
			c.Close()
		}
		done <- err
	}()
	c := <-a.StreamCh()
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	c.Close()
	if err := <-done; err != nil || string(buf[:n]) != "stream" {
		t.Fatalf("stream: read %q, dial/write err %v", buf[:n], err)
	}
	if got := b.streamBytes.Load(); got != 6 {
		t.Fatalf("b's stream bytes %d, want 6", got)
	}

	b.kill()
	before := sn.traffic()
	if _, err := a.WriteTo([]byte("lost"), b.addr); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteTo([]byte("unsent"), a.addr); err != nil {
		t.Fatal(err)
	}
	if d := sn.traffic().sub(before); d.packets != 1 || d.packetBytes != 4 {
		t.Fatalf("with b cut off: %+v, want a's one packet counted and b's none", d)
	}
	select {
	case p := <-a.PacketCh():
		t.Fatalf("a received %q from a node cut off", p.Buf)
	default:
	}
	if _, err := a.DialTimeout(b.addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a killed node: %v, want connection refused", err)
	}
	if _, err := b.DialTimeout(a.addr, time.Second); err == nil {
		t.Fatal("a killed node dialed out")
	}
	// A live node's port accepts, whether or not memberlist reads.
	c2, err := (&net.Dialer{}).Dial("tcp", a.addr)
	if err != nil {
		t.Fatalf("dial to a live node: %v", err)
	}
	c2.Close()
}

// TestSimClassify checks the split of a packet's bytes by what it carried,
// on memberlist's framing: a single message, a CRC header, a label and a
// compound of several.
func TestSimClassify(t *testing.T) {
	ping := []byte{0, 1, 2, 3}
	alive := []byte{4, 1, 2, 3, 4, 5}
	rec := []byte{8, wireVersion, kindRecord, '{', '}'}
	want := []byte{8, wireVersion, kindWant, '"', 'a', '"'}
	compound := func(parts ...[]byte) []byte {
		b := []byte{7, byte(len(parts))}
		for _, p := range parts {
			b = append(b, byte(len(p)>>8), byte(len(p)))
		}
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	crc := func(b []byte) []byte { return append([]byte{12, 0, 0, 0, 0}, b...) }
	for _, tt := range []struct {
		name string
		b    []byte
		want [simClasses]int
	}{
		{"ping", ping, [simClasses]int{simProbe: 4}},
		{"alive with CRC", crc(alive), [simClasses]int{simMember: 6, simFraming: 5}},
		{"record", rec, [simClasses]int{simRecord: 5}},
		{"want", want, [simClasses]int{simUserMsg: 6}},
		{"labelled compound", append([]byte{244, 2, 'l', 'b'}, compound(ping, alive, rec, want)...),
			[simClasses]int{simProbe: 4, simMember: 6, simRecord: 5, simUserMsg: 6, simFraming: 4 + 2 + 8}},
		{"truncated compound", compound(ping, alive)[:12], [simClasses]int{simProbe: 4, simFraming: 6 + 2}},
	} {
		if got := simClassify(tt.b); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSimNetSplit: split nodes lose each other's packets and cannot dial
// each other, both ways, and keep their links to a third; healed, they
// reach each other again.
func TestSimNetSplit(t *testing.T) {
	sn := &simNet{}
	a, b, c := sn.newTransport(t), sn.newTransport(t), sn.newTransport(t)
	for _, tr := range []*simTransport{a, b, c} {
		defer tr.Shutdown()
	}
	reaches := func(from, to *simTransport) bool {
		if _, err := from.WriteTo([]byte("x"), to.addr); err != nil {
			t.Fatal(err)
		}
		select {
		case <-to.PacketCh():
		default:
			return false
		}
		conn, err := from.DialTimeout(to.addr, time.Second)
		if err != nil {
			return false
		}
		conn.Close()
		(<-to.StreamCh()).Close()
		return true
	}
	check := func(when string, ab bool) {
		t.Helper()
		for _, p := range []struct {
			from, to *simTransport
			want     bool
		}{{a, b, ab}, {b, a, ab}, {a, c, true}, {c, b, true}} {
			if got := reaches(p.from, p.to); got != p.want {
				t.Errorf("%s: %s reaches %s: %v, want %v", when, p.from.addr, p.to.addr, got, p.want)
			}
		}
	}
	check("before the split", true)
	sn.split(a, b, true)
	check("split", false)
	sn.split(a, b, false)
	check("healed", true)
}
