package gossip

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/hashicorp/memberlist"
)

// simNet is an in-memory network for many memberlist instances in one
// process, after memberlist's MockNetwork, with what a scale simulation
// needs and MockNetwork lacks: it is safe for concurrent use, a packet to
// a full or stopped receiver is dropped (as UDP drops it) instead of
// blocking the sender forever, a node can be cut off (every packet to or
// from it dropped, dials refused: a host that was SIGKILLed), and it counts
// the bytes each node sends, packets and streams.
type simNet struct {
	mu    sync.Mutex
	nodes map[string]*simTransport // by "127.0.0.1:port"
	port  int
}

func (n *simNet) newTransport() *simTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes == nil {
		n.nodes = make(map[string]*simTransport)
	}
	n.port++
	t := &simTransport{net: n, port: n.port, addr: "127.0.0.1:" + strconv.Itoa(n.port),
		packets: make(chan *memberlist.Packet, 1024), streams: make(chan net.Conn, 64), stop: make(chan struct{})}
	n.nodes[t.addr] = t
	return t
}

func (n *simNet) peer(addr string) (*simTransport, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.nodes[addr]
	return t, ok && !t.down.Load()
}

// simTransport is one node's memberlist.Transport on a simNet.
type simTransport struct {
	net     *simNet
	port    int
	addr    string
	packets chan *memberlist.Packet // buffered; full: dropped
	streams chan net.Conn           // buffered; full: dial fails
	down    atomic.Bool             // cut off
	stop    chan struct{}           // closed by Shutdown
	once    sync.Once
	sent    atomic.Int64 // bytes written: packets and streams
}

var _ memberlist.Transport = (*simTransport)(nil)

type simAddr string

func (a simAddr) Network() string { return "sim" }
func (a simAddr) String() string  { return string(a) }

func (t *simTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.IPv4(127, 0, 0, 1), t.port, nil
}

func (t *simTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	if t.down.Load() {
		return now, nil
	}
	t.sent.Add(int64(len(b)))
	dst, ok := t.net.peer(addr)
	if !ok {
		return now, nil // lost, as UDP to a dead host is
	}
	select {
	case dst.packets <- &memberlist.Packet{Buf: append([]byte(nil), b...), From: simAddr(t.addr), Timestamp: now}:
	case <-dst.stop:
	default: // receiver's buffer full: dropped
	}
	return now, nil
}

func (t *simTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *simTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	dst, ok := t.net.peer(addr)
	if !ok || t.down.Load() {
		return nil, fmt.Errorf("sim: dial %s: connection refused", addr)
	}
	a, b := net.Pipe()
	select {
	case dst.streams <- &countConn{Conn: a, n: &dst.sent}:
		return &countConn{Conn: b, n: &t.sent}, nil
	case <-dst.stop:
	case <-time.After(timeout):
	}
	a.Close()
	b.Close()
	return nil, fmt.Errorf("sim: dial %s: timeout", addr)
}

func (t *simTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *simTransport) Shutdown() error {
	t.once.Do(func() { close(t.stop) })
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

// simNode is one Cluster on a simNet.
type simNode struct {
	c *Cluster
	t *simTransport
}

func startSimNode(tb testing.TB, sn *simNet, i int) simNode {
	tb.Helper()
	return startSimNodeWith(tb, sn, i, DefaultConfig()) // the production LAN profile
}

func startSimNodeWith(tb testing.TB, sn *simNet, i int, cfg Config) simNode {
	tb.Helper()
	tr := sn.newTransport()
	cfg.NodeName = fmt.Sprintf("n%04d", i)
	cfg.AdvertiseAddr = "127.0.0.1"
	cfg.BindPort = tr.port
	cfg.DataPort = 7947
	cfg.Memberlist.Transport = tr
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Start(); err != nil {
		tb.Fatal(err)
	}
	c.SetServices([]Service{{Name: svcname.Must("svc" + strconv.Itoa(i%10)), Port: 7000 + i%10}})
	tb.Cleanup(func() { _ = c.Shutdown() })
	return simNode{c: c, t: tr}
}

// waitAll polls until every node in nodes satisfies ok, or timeout; it
// returns how long that took and whether it happened.
func waitAll(nodes []simNode, timeout time.Duration, ok func(simNode) bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < timeout {
		all := true
		for _, n := range nodes {
			if !ok(n) {
				all = false
				break
			}
		}
		if all {
			return time.Since(start), true
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not synchronising
	}
	return time.Since(start), false
}

// simSizes is the cluster sizes TestSimScale runs: AMB_SIM_SIZES (comma
// separated), else 10 (CI, under -race; 1,000 takes minutes and most of
// two cores: go tool -modfile=tools/go.mod task sim runs 10,100,1000).
func simSizes(t *testing.T) []int {
	v := os.Getenv("AMB_SIM_SIZES")
	if v == "" {
		return []int{10}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 3 || n > 5000 {
			t.Fatalf("AMB_SIM_SIZES=%q: want sizes 3..5000", v)
		}
		out = append(out, n)
	}
	return out
}

// TestSimScale simulates clusters of N nodes in one process (gossip
// Clusters with the default LAN profile over simNet, no sockets) and prints
// one SIM line per size: how long a new node's join takes to reach every
// node, how long a node cut off without a goodbye takes to leave every
// node's membership, and the gossip bytes each node sends per second while
// idle. It fails when a join or a failure does not reach every node
// within a minute; the figures are printed, not asserted, because a
// loaded machine slows a thousand nodes sharing two cores.
func TestSimScale(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation skipped in -short mode")
	}
	for _, n := range simSizes(t) {
		t.Run(strconv.Itoa(n), func(t *testing.T) { simScale(t, n) })
	}
}

func simScale(t *testing.T, n int) {
	sn := &simNet{}
	nodes := make([]simNode, 0, n)
	start := time.Now()
	for i := range n {
		nd := startSimNode(t, sn, i)
		if i > 0 {
			// Join a random node already in: the cluster grows as a
			// tree, as mDNS-discovered joins make it.
			peer := nodes[rand.N(len(nodes))]
			if _, err := nd.c.Join([]string{peer.t.addr}); err != nil {
				t.Fatalf("node %d join: %v", i, err)
			}
		}
		nodes = append(nodes, nd)
	}
	converge, ok := waitAll(nodes, 2*time.Minute, func(nd simNode) bool { return nd.c.NumMembers() == n })
	if !ok {
		t.Fatalf("%d nodes: not every node sees %d members after %s", n, n, converge)
	}
	startup := time.Since(start)

	// Idle gossip: bytes sent per node per second.
	const idle = 10 * time.Second
	before := make([]int64, n)
	for i, nd := range nodes {
		before[i] = nd.t.sent.Load()
	}
	time.Sleep(idle) // the measurement window itself
	var total, most int64
	for i, nd := range nodes {
		d := nd.t.sent.Load() - before[i]
		total += d
		most = max(most, d)
	}
	avg := float64(total) / float64(n) / idle.Seconds()
	peak := float64(most) / idle.Seconds()

	// A join: a new node joins node 0; every node must list it.
	joiner := startSimNode(t, sn, n)
	at := time.Now()
	if _, err := joiner.c.Join([]string{nodes[0].t.addr}); err != nil {
		t.Fatalf("join: %v", err)
	}
	joinAll, ok := waitAll(nodes, time.Minute, func(nd simNode) bool { return nd.c.Alive(joiner.c.LocalNode()) })
	if !ok {
		t.Errorf("%d nodes: the join did not reach every node within a minute", n)
	}
	joinAll = time.Since(at)

	// A failure: a node is cut off without a goodbye; every other node
	// must stop listing it alive.
	victim := nodes[n/2]
	victim.t.down.Store(true)
	at = time.Now()
	rest := append(append([]simNode{joiner}, nodes[:n/2]...), nodes[n/2+1:]...)
	failAll, ok := waitAll(rest, time.Minute, func(nd simNode) bool { return !nd.c.Alive(victim.c.LocalNode()) })
	if !ok {
		t.Errorf("%d nodes: the failure did not reach every node within a minute", n)
	}
	failAll = time.Since(at)
	t.Logf("SIM nodes=%d startup=%s join_everywhere=%s failure_everywhere=%s gossip_bytes_per_node_per_s=%.0f (busiest node %.0f)",
		n, startup.Round(time.Millisecond), joinAll.Round(time.Millisecond), failAll.Round(time.Millisecond), avg, peak)
}
