package gossip

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestNodeTableLayout fails when memberlist's private node table no longer
// has the layout nodetable.go reads (an upgrade changed it): then suspect
// members would silently be reported alive again. It also checks that the
// lock nodeTable takes is memberlist's own: while the test holds it,
// memberlist's NumMembers (which read-locks nodeLock) must not return.
func TestNodeTableLayout(t *testing.T) {
	a := newNode(t, "a", "test", 0)
	b := newNode(t, "b", "test", 0)
	join(t, b, a)
	waitFor(t, "a sees b", func() error {
		if n := a.ml.NumMembers(); n != 2 {
			return fmt.Errorf("a: %d members", n)
		}
		return nil
	})
	tbl, err := newNodeTable(a.ml)
	if err != nil {
		t.Fatalf("memberlist's node table changed; review nodetable.go: %v", err)
	}
	if a.table.Load() == nil {
		t.Fatal("Start did not install the node table reader")
	}
	views, ok := tbl.read(nil, false)
	if !ok {
		t.Fatal("read without try failed")
	}
	// Nobody is suspect; TestSuspectRefusedHidden sees one found.
	if s, ok := tbl.suspects(nil, false); !ok || len(s) != 0 {
		t.Errorf("suspects: %q, %v; want none, true", s, ok)
	}
	var names []string
	for _, v := range views {
		names = append(names, v.name)
		if v.state != memberlist.StateAlive {
			t.Errorf("node %s: state %v, want alive", v.name, v.state)
		}
	}
	slices.Sort(names)
	var want []string
	for _, n := range a.ml.Members() {
		want = append(want, n.Name)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("node table names %q, memberlist.Members %q", names, want)
	}

	tbl.lock.Lock()
	if _, ok := tbl.read(nil, true); ok {
		t.Error("try read succeeded while the lock was held")
	}
	done := make(chan int)
	go func() { done <- a.ml.NumMembers() }()
	select {
	case <-done:
		tbl.lock.Unlock()
		t.Fatal("memberlist read its node table while nodeTable's lock was held: not memberlist's nodeLock")
	case <-time.After(100 * time.Millisecond): // a negative check: it must NOT return
	}
	tbl.lock.Unlock()
	if n := <-done; n != 2 {
		t.Errorf("NumMembers after unlock: %d, want 2", n)
	}

	if _, err := newNodeTable(nil); err == nil {
		t.Error("newNodeTable(nil): no error")
	}
}

// TestSuspectRefusedHidden stops c's process without a leave (its gossip
// port then refuses connections): a and b list c "suspect" before "dead",
// and drop c from the catalog while c is still suspect.
func TestSuspectRefusedHidden(t *testing.T) {
	// A suspect phase of seconds, not 750ms: a busy test machine must not
	// let a and b sleep through it.
	nodes, want := threeNodesWith(t, func(cfg *Config) { cfg.Memberlist.SuspicionMult = 6 })
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, c := range nodes[:2] {
		waitFor(t, c.LocalNode()+" hides suspect c", func() error {
			// Catalog first: if c is still suspect afterwards, it was
			// suspect (not dead) when the catalog dropped it.
			if err := catalogIs(c, want[:2]); err != nil {
				return err
			}
			if got := memberState(c, "c"); got != stateSuspect {
				return fmt.Errorf("member c: state %q, want %q", got, stateSuspect)
			}
			return nil
		})
	}
	for _, c := range nodes[:2] {
		waitFor(t, c.LocalNode()+" declares c dead", func() error {
			if got := memberState(c, "c"); got != stateDead {
				return fmt.Errorf("member c: state %q, want %q", got, stateDead)
			}
			return catalogIs(c, want[:2])
		})
	}
}

// stallTransport is a memberlist transport that, while stalled, drops
// every packet and accepts streams without handing them to memberlist: a
// node too busy to answer, whose kernel still completes TCP handshakes.
// It counts the streams that carried nothing but memberlist's label
// header, which is what confirmSuspect sends.
type stallTransport struct {
	*memberlist.NetTransport
	label   string
	stalled atomic.Bool
	probes  atomic.Int64 // label-only streams seen while stalled
	packets chan *memberlist.Packet
	streams chan net.Conn
	wg      sync.WaitGroup
}

func newStallTransport(t *testing.T, label string) *stallTransport {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &stallTransport{NetTransport: nt, label: label, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn)}
	stop := make(chan struct{})
	s.wg.Go(func() {
		for {
			select {
			case p := <-nt.PacketCh():
				if s.stalled.Load() {
					continue
				}
				select {
				case s.packets <- p:
				case <-stop:
					return
				}
			case c := <-nt.StreamCh():
				if s.stalled.Load() {
					s.wg.Go(func() { s.swallow(c) })
					continue
				}
				select {
				case s.streams <- c:
				case <-stop:
					c.Close()
					return
				}
			case <-stop:
				return
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		s.wg.Wait()
	})
	return s
}

func (s *stallTransport) PacketCh() <-chan *memberlist.Packet { return s.packets }
func (s *stallTransport) StreamCh() <-chan net.Conn           { return s.streams }

// swallow reads a stalled stream to its end (or 2s) without answering.
func (s *stallTransport) swallow(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	var hdr bytes.Buffer
	_ = memberlist.AddLabelHeaderToStream(writerConn{&hdr}, s.label)
	if err == nil && bytes.Equal(b, hdr.Bytes()) {
		s.probes.Add(1)
	}
}

// writerConn lets AddLabelHeaderToStream write into a buffer.
type writerConn struct{ io.Writer }

func (w writerConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (w writerConn) Close() error                     { return nil }
func (w writerConn) LocalAddr() net.Addr              { return nil }
func (w writerConn) RemoteAddr() net.Addr             { return nil }
func (w writerConn) SetDeadline(time.Time) error      { return nil }
func (w writerConn) SetReadDeadline(time.Time) error  { return nil }
func (w writerConn) SetWriteDeadline(time.Time) error { return nil }

// TestSuspectAliveKeepsServices makes c stop answering while its process
// and listening socket stay (a busy node): a lists it "suspect", then
// "dead", and keeps c's services in its catalog for as long as c is only
// suspect, because c's gossip port still accepts a's confirming
// connection.
func TestSuspectAliveKeepsServices(t *testing.T) {
	st := newStallTransport(t, "test")
	// A suspect phase long enough to watch.
	a := newNodeWith(t, "a", "test", 7001, func(cfg *Config) { cfg.Memberlist.SuspicionMult = 6 })
	b := newNode(t, "b", "test", 7002)
	c := newNodeWith(t, "c", "test", 7003, func(cfg *Config) { cfg.Memberlist.Transport = st })
	join(t, b, a)
	join(t, c, a)
	c.SetServices([]Service{{Name: "web", Port: 80}})
	withC := []Entry{
		{Node: "a", Addr: "127.0.0.1", DataPort: 7001},
		{Node: "b", Addr: "127.0.0.1", DataPort: 7002},
		{Node: "c", Addr: "127.0.0.1", DataPort: 7003, Services: []Service{{Name: "web", Port: 80}}},
	}
	waitCatalogs(t, []*Cluster{a, b, c}, withC)

	st.stalled.Store(true)
	suspectSeen := 0
	waitFor(t, "a declares c dead", func() error {
		cat := withoutVersions(a.Catalog())
		state := memberState(a, "c")
		switch state {
		case stateSuspect:
			suspectSeen++
			if !slices.ContainsFunc(cat, func(e Entry) bool { return e.Node == "c" }) && memberState(a, "c") == stateSuspect {
				t.Fatalf("a dropped c's services while c was only suspect and its port accepted: %+v", cat)
			}
		case stateDead:
			return nil
		}
		return fmt.Errorf("member c: state %q", state)
	})
	if suspectSeen == 0 {
		t.Error("a never listed c as suspect before dead")
	}
	if st.probes.Load() == 0 {
		t.Error("no confirming connection reached c's gossip port")
	}
}

// TestRefusedSuspectComesBack: a member hidden because it was suspect and
// refused is listed again once memberlist holds it alive (it refuted), and
// a member that is only suspect is never hidden. Driven without a network:
// applySuspects gets the names memberlist would hold suspect, and the
// refusal is set as confirmSuspect sets it.
func TestRefusedSuspectComesBack(t *testing.T) {
	c, d := newOffline(t, "a")
	d.NotifyJoin(mlNode("b", "10.0.0.2", memberlist.StateAlive))
	c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", DataPort: 7002, Services: []Service{{Name: "web", Port: 80}}, Version: 1}}}, false)
	hasB := func() bool {
		return slices.ContainsFunc(c.Catalog(), func(e Entry) bool { return e.Node == "b" })
	}
	c.applySuspects([]string{"b"})
	if got := memberState(c, "b"); got != stateSuspect {
		t.Fatalf("b: state %q, want suspect", got)
	}
	if !hasB() {
		t.Fatal("a suspect that did not refuse was hidden")
	}
	if got := c.NumMembers(); got != 1 { // b; an offline node does not list itself
		t.Errorf("NumMembers with b suspect: %d, want 1 (suspects count as alive)", got)
	}
	c.mu.Lock()
	c.members["b"].refused = true
	c.mu.Unlock()
	if hasB() {
		t.Fatal("a refused suspect is still in the catalog")
	}
	c.applySuspects(nil) // memberlist holds b alive again
	if got := memberState(c, "b"); got != stateAlive {
		t.Errorf("b: state %q, want alive", got)
	}
	if !hasB() {
		t.Error("b refuted but its services did not come back")
	}
	// A node that goes down and up again starts clean.
	c.applySuspects([]string{"b"})
	c.mu.Lock()
	c.members["b"].refused = true
	c.mu.Unlock()
	d.NotifyLeave(mlNode("b", "10.0.0.2", memberlist.StateAlive))
	d.NotifyJoin(mlNode("b", "10.0.0.2", memberlist.StateAlive))
	if got := memberState(c, "b"); got != stateAlive || !hasB() {
		t.Errorf("b rejoined: state %q, in catalog %v; want alive and listed", got, hasB())
	}
}

// TestRefusedHint: a peer's message that a member refuses connections
// makes this node dial the member itself. A member that accepts stays; one
// that refuses is hidden at once, before memberlist here suspects it, and
// shown again if memberlist never comes to suspect it. Repeated messages
// dial at most once per hintEvery.
func TestRefusedHint(t *testing.T) {
	ln, accepted := countingListener(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close() // nothing listens there now: refused

	c, d := newOffline(t, "a")
	for _, p := range []struct {
		name string
		port int
	}{{"alive", ln.Addr().(*net.TCPAddr).Port}, {"gone", closedPort}} {
		d.NotifyJoin(&memberlist.Node{Name: p.name, Addr: net.ParseIP("127.0.0.1"), Port: uint16(p.port)})
		c.merge([]record{{Entry: Entry{Node: p.name, Addr: "127.0.0.1", DataPort: 7002, Services: []Service{{Name: "web", Port: 80}}, Version: 1}}}, false)
	}
	listed := func(name string) bool {
		return slices.ContainsFunc(c.Catalog(), func(e Entry) bool { return e.Node == name })
	}

	msg, err := encodeRefused("alive")
	if err != nil {
		t.Fatal(err)
	}
	d.NotifyMsg(msg)
	d.NotifyMsg(msg) // within hintEvery: no second dial
	c.checks.Wait()
	if !listed("alive") {
		t.Error("a member that accepts was hidden on a peer's word")
	}
	if n := accepted(); n != 1 {
		t.Errorf("two messages within %v made %d dials, want 1", hintEvery, n)
	}

	c.refusedHint("gone")
	c.checks.Wait()
	if listed("gone") {
		t.Fatal("a member that refuses is still listed after a peer's message")
	}
	if got := memberState(c, "gone"); got != stateAlive {
		t.Errorf("gone: state %q, want alive (memberlist here does not suspect it yet)", got)
	}
	c.applySuspects(nil)
	if listed("gone") {
		t.Fatal("shown again before the grace ran out")
	}
	c.mu.Lock()
	c.members["gone"].refusedAt = time.Now().Add(-c.refusedGrace() - time.Second)
	c.mu.Unlock()
	c.applySuspects(nil)
	if !listed("gone") {
		t.Error("memberlist never suspected it, but it stays hidden after the grace")
	}

	// Suspected in time: stays hidden past the grace, until memberlist
	// holds it alive again.
	c.mu.Lock()
	c.members["gone"].hintAt = time.Time{}
	c.mu.Unlock()
	c.refusedHint("gone")
	c.checks.Wait()
	c.applySuspects([]string{"gone"})
	c.mu.Lock()
	c.members["gone"].refusedAt = time.Now().Add(-c.refusedGrace() - time.Second)
	c.mu.Unlock()
	c.applySuspects([]string{"gone"})
	if listed("gone") {
		t.Error("a refused member memberlist suspects was shown again")
	}
	c.applySuspects(nil)
	if !listed("gone") {
		t.Error("memberlist holds it alive again, but it stays hidden")
	}

	if _, err := decodeRefused([]byte{wireVersion, kindRefused, '"', '"'}); err == nil {
		t.Error("decodeRefused accepted an empty name")
	}
}

// TestNoDialsInASuspicionBurst: with more than maxConfirmSuspects members
// suspect at once nobody dials them (a busy cluster, not crashes); a
// single new suspect in a small cluster is dialed.
func TestNoDialsInASuspicionBurst(t *testing.T) {
	ln, accepted := countingListener(t)
	c, d := newOffline(t, "a")
	var names []string
	for i := range maxConfirmSuspects + 1 {
		name := fmt.Sprintf("m%d", i)
		names = append(names, name)
		d.NotifyJoin(&memberlist.Node{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: uint16(ln.Addr().(*net.TCPAddr).Port)})
	}
	c.applySuspects(names)
	c.checks.Wait()
	if n := accepted(); n != 0 {
		t.Errorf("%d suspects at once: %d dials, want none", len(names), n)
	}
	c.applySuspects(nil)
	c.applySuspects(names[:1])
	c.checks.Wait()
	if n := accepted(); n != 1 {
		t.Errorf("one new suspect among %d members: %d dials, want 1", len(names), n)
	}
}

// countingListener listens on a loopback port, closed at the test's end,
// and returns it with a function that counts (and closes) the connections
// the kernel completed since the last call: they wait in the backlog, so
// once the dials returned they are all there.
func countingListener(t *testing.T) (*net.TCPListener, func() int) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, func() int {
		n := 0
		_ = ln.SetDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			conn, err := ln.Accept()
			if err != nil {
				return n
			}
			n++
			conn.Close()
		}
	}
}

// TestRingSuccessorsDial checks that a new suspect is dialed by the
// ringDialers alive members that follow it in name order whatever the
// coin says, and by no other member when the coin says no: with random
// dials alone, a crash was now and then dialed by nobody and waited for
// memberlist's timeout.
func TestRingSuccessorsDial(t *testing.T) {
	tests := []struct {
		self, suspect string
		dead          []string // members known but not alive
		want          int      // dials by self
	}{
		{self: "m03", suspect: "m02", want: 1},                        // next after it
		{self: "m04", suspect: "m02", want: 1},                        // second after it
		{self: "m05", suspect: "m02", want: 0},                        // third
		{self: "m05", suspect: "m02", dead: []string{"m03"}, want: 1}, // a dead member does not count
		{self: "m00", suspect: "m09", want: 1},                        // wraps round
		{self: "m01", suspect: "m09", want: 1},                        // wraps round, second
		{self: "m02", suspect: "m09", want: 0},                        // wraps round, third
		{self: "m01", suspect: "m00", dead: []string{"m09"}, want: 1}, // an unrelated dead member changes nothing
		{self: "m08", suspect: "m02", want: 0},                        // far from it
	}
	for _, tc := range tests {
		t.Run(tc.self+" after "+tc.suspect, func(t *testing.T) {
			ln, accepted := countingListener(t)
			c, d := newOffline(t, tc.self)
			c.coin = func() float64 { return 1 } // the random dial never fires
			port := uint16(ln.Addr().(*net.TCPAddr).Port)
			for i := range 10 {
				name := fmt.Sprintf("m%02d", i)
				if name != tc.self {
					d.NotifyJoin(&memberlist.Node{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: port})
				}
			}
			for _, name := range tc.dead {
				d.NotifyLeave(&memberlist.Node{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: port})
			}
			c.applySuspects([]string{tc.suspect})
			c.checks.Wait()
			if n := accepted(); n != tc.want {
				t.Errorf("%s on suspect %s: %d dials, want %d", tc.self, tc.suspect, n, tc.want)
			}
		})
	}
}
