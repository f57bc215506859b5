package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

const waitTimeout = 15 * time.Second

// testLogger discards logs unless GOSSIP_TEST_LOG is set. It never writes
// to t.Log: memberlist goroutines may still log after a test ends.
func testLogger() *slog.Logger {
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newNode starts a node of cluster on 127.0.0.1 with a free port and fast
// timers, and shuts it down when the test ends.
func newNode(t *testing.T, name, cluster string, dataPort int) *Cluster {
	t.Helper()
	return newNodeWith(t, name, cluster, dataPort, func(*Config) {})
}

// newNodeWith is newNode with mod applied to the config before New, and
// each of before applied to the new node before Start (test seams such
// as onGreet).
func newNodeWith(t *testing.T, name, cluster string, dataPort int, mod func(*Config), before ...func(*Cluster)) *Cluster {
	t.Helper()
	cfg := DefaultLocalConfig()
	cfg.NodeName = name
	cfg.Cluster = cluster
	cfg.BindAddr = "127.0.0.1"
	cfg.BindPort = 0
	cfg.DataPort = dataPort
	cfg.Logger = testLogger()
	mod(&cfg)
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	for _, f := range before {
		f(c)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("Start(%q): %v", name, err)
	}
	t.Cleanup(func() {
		if err := c.Shutdown(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Shutdown(%q): %v", name, err)
		}
	})
	return c
}

func gossipAddr(c *Cluster) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.GossipPort()))
}

func join(t *testing.T, c, to *Cluster) {
	t.Helper()
	n, err := c.Join([]string{gossipAddr(to)})
	if err != nil || n != 1 {
		t.Fatalf("%s joining %s: got %d, %v; want 1, nil", c.LocalNode(), to.LocalNode(), n, err)
	}
}

// waitFor polls cond until it returns nil or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after %v: %v", what, waitTimeout, err)
		}
		<-tick.C
	}
}

// withoutVersions returns es with Version zeroed, for comparison.
func withoutVersions(es []Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		e.Version = 0
		out[i] = e
	}
	return out
}

func catalogIs(c *Cluster, want []Entry) error {
	got := withoutVersions(c.Catalog())
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%s catalog: got %+v, want %+v", c.LocalNode(), got, want)
	}
	return nil
}

func waitCatalogs(t *testing.T, nodes []*Cluster, want []Entry) {
	t.Helper()
	for _, c := range nodes {
		waitFor(t, c.LocalNode()+" converges", func() error { return catalogIs(c, want) })
	}
}

func memberState(c *Cluster, name string) string {
	for _, m := range c.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

// threeNodes starts a, b and c (data ports 7001-7003), joins them and sets
// services; it returns the nodes and the converged catalog.
func threeNodes(t *testing.T) ([]*Cluster, []Entry) {
	t.Helper()
	return threeNodesWith(t, func(*Config) {})
}

// threeNodesWith is threeNodes with mod applied to every node's config.
func threeNodesWith(t *testing.T, mod func(*Config)) ([]*Cluster, []Entry) {
	t.Helper()
	want := []Entry{
		{Node: "a", Addr: "127.0.0.1", DataPort: 7001, Services: []Service{{Name: "db", Port: 5432, Weight: 2}, {Name: "web", Port: 80}}},
		{Node: "b", Addr: "127.0.0.1", DataPort: 7002, Services: []Service{{Name: "cache", Port: 6379}}},
		{Node: "c", Addr: "127.0.0.1", DataPort: 7003},
	}
	var nodes []*Cluster
	for _, e := range want {
		nodes = append(nodes, newNodeWith(t, e.Node, "test", e.DataPort, mod))
	}
	join(t, nodes[1], nodes[0])
	join(t, nodes[2], nodes[0])
	// Unsorted on purpose: SetServices sorts.
	nodes[0].SetServices([]Service{{Name: "web", Port: 80}, {Name: "db", Port: 5432, Weight: 2}})
	nodes[1].SetServices([]Service{{Name: "cache", Port: 6379}})
	waitCatalogs(t, nodes, want)
	return nodes, want
}

func TestCatalogConverges(t *testing.T) {
	nodes, want := threeNodes(t)
	for _, c := range nodes {
		if got := c.NumMembers(); got != 3 {
			t.Errorf("%s NumMembers: got %d, want 3", c.LocalNode(), got)
		}
	}

	// Drain, so the next signal is caused by the change below.
	select {
	case <-nodes[0].Changed():
	default:
	}
	want[1].Services = []Service{{Name: "api", Port: 8080}, {Name: "cache", Port: 6380}}
	nodes[1].SetServices([]Service{{Name: "cache", Port: 6380}, {Name: "api", Port: 8080}})
	want[2].Services = []Service{{Name: "ssh", Port: 22}}
	nodes[2].SetServices([]Service{{Name: "ssh", Port: 22}, {Name: "", Port: 1}, {Name: "ssh", Port: 23}, {Name: "bad", Port: 0}})
	waitCatalogs(t, nodes, want)
	select {
	case <-nodes[0].Changed():
	case <-time.After(waitTimeout):
		t.Error("Changed: got no signal after a remote catalog change")
	}
}

func TestDeparture(t *testing.T) {
	tests := []struct {
		name      string
		stop      func(t *testing.T, c *Cluster)
		wantState string
	}{
		{name: "leave", wantState: stateLeft, stop: func(t *testing.T, c *Cluster) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := c.Leave(ctx); err != nil {
				t.Fatalf("Leave: %v", err)
			}
			if err := c.Shutdown(); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		}},
		{name: "crash", wantState: stateDead, stop: func(t *testing.T, c *Cluster) {
			if err := c.Shutdown(); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes, want := threeNodes(t)
			tc.stop(t, nodes[2])
			for _, c := range nodes[:2] {
				waitFor(t, c.LocalNode()+" drops c", func() error {
					if err := catalogIs(c, want[:2]); err != nil {
						return err
					}
					if got := memberState(c, "c"); got != tc.wantState {
						return fmt.Errorf("member c: got state %q, want %q", got, tc.wantState)
					}
					if got := c.NumMembers(); got != 2 {
						return fmt.Errorf("NumMembers: got %d, want 2", got)
					}
					return nil
				})
			}
		})
	}
}

// newOffline returns a Cluster that is never started, for driving its
// delegate directly.
func newOffline(t *testing.T, name string) (*Cluster, *delegate) {
	t.Helper()
	c, err := New(Config{NodeName: name, BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return c, &delegate{c: c}
}

func mlNode(name, ip string, state memberlist.NodeStateType) *memberlist.Node {
	return &memberlist.Node{Name: name, Addr: net.ParseIP(ip), Port: 7946, State: state}
}

// TestMemberStateOnLeave checks that "left" versus "dead" follows the
// node's own Left record, whichever of it and memberlist's message comes
// first, and that memberlist's n.State is not trusted: v0.7.0 never sets it.
func TestMemberStateOnLeave(t *testing.T) {
	tests := []struct {
		name        string
		recordLeft  bool
		recordAfter bool // the record arrives after NotifyLeave
		want        string
	}{
		{name: "left", recordLeft: true, want: stateLeft},
		{name: "left record after leave message", recordLeft: true, recordAfter: true, want: stateLeft},
		{name: "dead", want: stateDead},
		{name: "dead, record after", recordAfter: true, want: stateDead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, d := newOffline(t, "a")
			d.NotifyJoin(mlNode("b", "10.0.0.2", memberlist.StateAlive))
			c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1}}}, false)
			rec := record{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 2}, Left: tc.recordLeft}
			if !tc.recordAfter {
				c.merge([]record{rec}, false)
			}
			// What memberlist v0.7.0 passes for a left node as well as a dead one.
			d.NotifyLeave(mlNode("b", "10.0.0.2", memberlist.StateAlive))
			if tc.recordAfter {
				c.merge([]record{rec}, false)
			}
			if got := memberState(c, "b"); got != tc.want {
				t.Errorf("member b: got state %q, want %q", got, tc.want)
			}
			if got := c.NumMembers(); got != 0 {
				t.Errorf("NumMembers: got %d, want 0", got)
			}
		})
	}
}

func TestClustersDoNotMerge(t *testing.T) {
	red := newNode(t, "red", "red", 1)
	blue := newNode(t, "blue", "blue", 2)
	n, err := blue.Join([]string{gossipAddr(red)})
	if err == nil || n != 0 {
		t.Fatalf("Join across clusters: got %d, %v; want 0 and an error", n, err)
	}
	for _, c := range []*Cluster{red, blue} {
		if got := c.NumMembers(); got != 1 {
			t.Errorf("%s NumMembers: got %d, want 1", c.LocalNode(), got)
		}
		if got := len(c.Catalog()); got != 1 {
			t.Errorf("%s Catalog: got %d entries, want 1", c.LocalNode(), got)
		}
	}
}

func TestRestartReclaimsName(t *testing.T) {
	a := newNode(t, "a", "test", 7001)
	old := newNode(t, "b", "test", 7002)
	join(t, old, a)
	old.SetServices([]Service{{Name: "web", Port: 80}})
	waitCatalogs(t, []*Cluster{a, old}, []Entry{
		{Node: "a", Addr: "127.0.0.1", DataPort: 7001},
		{Node: "b", Addr: "127.0.0.1", DataPort: 7002, Services: []Service{{Name: "web", Port: 80}}},
	})
	oldVersion := old.Catalog()[1].Version
	oldPort := old.GossipPort()
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b dead", func() error {
		if got := memberState(a, "b"); got != stateDead {
			return fmt.Errorf("member b: got %q, want %q", got, stateDead)
		}
		return nil
	})

	b := newNode(t, "b", "test", 7003)
	if b.GossipPort() == oldPort {
		t.Fatalf("restarted node got the old port %d", oldPort)
	}
	b.SetServices([]Service{{Name: "api", Port: 8080}})
	want := []Entry{
		{Node: "a", Addr: "127.0.0.1", DataPort: 7001},
		{Node: "b", Addr: "127.0.0.1", DataPort: 7003, Services: []Service{{Name: "api", Port: 8080}}},
	}
	waitFor(t, "restarted b is accepted", func() error {
		// memberlist accepts the new address only once the old one has been
		// dead for DeadNodeReclaimTime; mesh re-joins discovered peers the
		// same way.
		if _, err := b.Join([]string{gossipAddr(a)}); err != nil {
			return err
		}
		for _, m := range a.Members() {
			if m.Name == "b" && m.State == stateAlive && m.Port == b.GossipPort() {
				return catalogIs(a, want)
			}
		}
		return fmt.Errorf("a members: %+v", a.Members())
	})
	waitCatalogs(t, []*Cluster{a, b}, want)
	if got := a.Catalog()[1].Version; got <= oldVersion {
		t.Errorf("restarted version: got %d, want > %d", got, oldVersion)
	}
}

func TestLateJoinerGetsCatalogOnJoin(t *testing.T) {
	nodes, want := threeNodes(t)
	late := newNode(t, "d", "test", 7004)
	late.SetServices([]Service{{Name: "late", Port: 9000}})
	join(t, late, nodes[1])
	// Join returns after the push/pull merged, so no waiting here.
	got := withoutVersions(late.Catalog())
	want = append(want, Entry{Node: "d", Addr: "127.0.0.1", DataPort: 7004, Services: []Service{{Name: "late", Port: 9000}}})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("late joiner catalog right after Join: got %+v, want %+v", got, want)
	}
	waitCatalogs(t, nodes, want)
}

func TestLifecycle(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.NodeName = "a"
	cfg.BindAddr = "127.0.0.1"
	cfg.BindPort = 0
	cfg.Logger = testLogger()

	t.Run("before start", func(t *testing.T) {
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.SetServices([]Service{{Name: "web", Port: 80}})
		if got := c.Catalog(); len(got) != 1 || len(got[0].Services) != 1 {
			t.Errorf("Catalog before Start: got %+v, want own entry with one service", got)
		}
		if _, err := c.Join([]string{"127.0.0.1:1"}); err == nil {
			t.Error("Join before Start: got nil error")
		}
		if err := c.Leave(t.Context()); err == nil {
			t.Error("Leave before Start: got nil error")
		}
		if err := c.Shutdown(); err != nil {
			t.Errorf("Shutdown: got %v, want nil", err)
		}
		if err := c.Start(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Start after Shutdown: got %v, want net.ErrClosed", err)
		}
	})

	t.Run("started", func(t *testing.T) {
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err == nil {
			t.Error("second Start: got nil error")
		}
		if c.GossipPort() == 0 {
			t.Error("GossipPort: got 0 after Start")
		}
		if err := c.Leave(t.Context()); err != nil {
			t.Errorf("Leave: %v", err)
		}
		if err := c.Leave(t.Context()); err != nil {
			t.Errorf("second Leave: got %v, want nil", err)
		}
		if got := c.Catalog(); len(got) != 0 {
			t.Errorf("Catalog after Leave: got %+v, want none", got)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() { errs <- c.Shutdown() })
		}
		wg.Wait()
		close(errs)
		nils := 0
		for err := range errs {
			switch {
			case err == nil:
				nils++
			case !errors.Is(err, net.ErrClosed):
				t.Errorf("concurrent Shutdown: got %v, want nil or net.ErrClosed", err)
			}
		}
		if nils != 1 {
			t.Errorf("concurrent Shutdown: got %d nil results, want 1", nils)
		}
		if err := c.Leave(t.Context()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Leave after Shutdown: got %v, want net.ErrClosed", err)
		}
		if _, err := c.Join([]string{"127.0.0.1:1"}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Join after Shutdown: got %v, want net.ErrClosed", err)
		}
	})

	t.Run("bind conflict leaves nothing open", func(t *testing.T) {
		first := newNode(t, "first", "test", 0)
		cfg := cfg
		cfg.BindPort = first.GossipPort()
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err == nil {
			t.Fatal("Start on a used port: got nil error")
		}
		if err := c.Shutdown(); err != nil {
			t.Errorf("Shutdown after failed Start: got %v, want nil", err)
		}
	})
}

// leakedGoroutines returns the stacks of goroutines running code of this
// package's Cluster or of memberlist.
func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "github.com/hashicorp/memberlist.") || strings.Contains(s, "/gossip.(*Cluster)") {
			out = append(out, s)
		}
	}
	return out
}

// TestNoGoroutineLeak runs after the other cluster tests (source order) and
// also catches goroutines they left behind.
func TestNoGoroutineLeak(t *testing.T) {
	a := newNode(t, "a", "leak", 1)
	b := newNode(t, "b", "leak", 2)
	join(t, b, a)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Cluster{a, b} {
		if err := c.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "gossip goroutines exit", func() error {
		if g := leakedGoroutines(); len(g) > 0 {
			return fmt.Errorf("%d goroutines left, first:\n%s", len(g), g[0])
		}
		return nil
	})
}

func TestUnknownNodeRecordsCapped(t *testing.T) {
	c, d := newOffline(t, "a")
	for i := range maxPending + 50 {
		c.merge([]record{{Entry: Entry{Node: fmt.Sprintf("n%03d", i), Addr: "10.0.0.9", Version: 1,
			Services: []Service{{Name: "web", Port: 80}}}}}, false)
	}
	c.mu.Lock()
	pending, records := len(c.pending), len(c.records)
	c.mu.Unlock()
	if pending != maxPending || records != 0 {
		t.Errorf("after %d unknown records: got %d pending and %d records, want %d and 0",
			maxPending+50, pending, records, maxPending)
	}
	if got := c.bcast.NumQueued(); got != 0 {
		t.Errorf("broadcasts queued for unknown nodes: got %d, want 0", got)
	}
	if got := c.Catalog(); len(got) != 1 {
		t.Errorf("Catalog: got %+v, want only the own entry", got)
	}

	// The newest survive, and become visible once memberlist reports them.
	last := fmt.Sprintf("n%03d", maxPending+49)
	d.NotifyJoin(mlNode(last, "10.0.0.9", memberlist.StateAlive))
	got := c.Catalog()
	if len(got) != 2 || got[1].Node != last || len(got[1].Services) != 1 {
		t.Errorf("Catalog after NotifyJoin(%q): got %+v, want own entry and %q with its service", last, got, last)
	}
	c.mu.Lock()
	pending = len(c.pending)
	c.mu.Unlock()
	if pending != maxPending-1 {
		t.Errorf("pending after NotifyJoin: got %d, want %d", pending, maxPending-1)
	}
}

func TestBroadcastQueuePruned(t *testing.T) {
	c, d := newOffline(t, "a")
	const n = 200
	for i := range n {
		name := fmt.Sprintf("n%03d", i)
		d.NotifyJoin(mlNode(name, "10.0.0.9", memberlist.StateAlive))
		d.NotifyLeave(mlNode(name, "10.0.0.9", memberlist.StateAlive))
		c.merge([]record{{Entry: Entry{Node: name, Addr: "10.0.0.9", Version: 1}}}, false)
	}
	// No node is alive, so memberlist's NumNodes is 1.
	if got, limit := c.bcast.NumQueued(), queuePerNode+queueExtra; got > limit {
		t.Errorf("queued broadcasts after %d records: got %d, want at most %d", n, got, limit)
	}
}

func TestOversizedRecordNotQueued(t *testing.T) {
	var logs bytes.Buffer
	cfg := Config{NodeName: "a", BindAddr: "127.0.0.1",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &delegate{c: c}
	many := func(prefix string) []Service {
		var svcs []Service
		for i := range 100 {
			svcs = append(svcs, Service{Name: svcname.Must(fmt.Sprintf("%s-%03d", prefix, i)), Port: 1000 + i})
		}
		return svcs
	}

	c.SetServices(many("svc"))
	c.SetServices(many("other"))
	if got := c.bcast.NumQueued(); got != 0 {
		t.Errorf("own oversized record: got %d queued, want 0", got)
	}
	if got := strings.Count(logs.String(), "too large for a gossip packet"); got != 1 {
		t.Errorf("size warnings after two oversized SetServices: got %d, want 1; logs:\n%s", got, logs.String())
	}
	if got := c.Catalog(); len(got) != 1 || len(got[0].Services) != 100 {
		t.Errorf("Catalog: got %d entries, want own entry with 100 services", len(got))
	}

	d.NotifyJoin(mlNode("b", "10.0.0.2", memberlist.StateAlive))
	c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: 1, Services: many("b")}}}, false)
	if got := c.bcast.NumQueued(); got != 0 {
		t.Errorf("remote oversized record: got %d queued, want 0", got)
	}
	if got := c.Catalog(); len(got) != 2 {
		t.Errorf("Catalog: got %d entries, want 2 (the oversized remote record is still kept)", len(got))
	}

	c.SetServices([]Service{{Name: "web", Port: 80}})
	if got := c.bcast.NumQueued(); got != 1 {
		t.Errorf("small record: got %d queued, want 1", got)
	}
}

// servicesOfSize returns services whose record for c encodes to exactly
// size bytes.
func servicesOfSize(t *testing.T, c *Cluster, size int) []Service {
	t.Helper()
	encoded := func(svcs []Service) int {
		r := c.self.clone()
		r.Services = svcs
		return len(mustEncodeRecord(t, r))
	}
	var svcs []Service
	for i := 0; ; i++ {
		next := append(slices.Clone(svcs), Service{Name: svcname.Must(fmt.Sprintf("s%03d", i)), Port: 10000 + i})
		if encoded(next) > size-22 { // room for the smallest last service
			break
		}
		svcs = next
	}
	// The last service fills the rest exactly: a name of 1 to
	// svcname.MaxLen letters, a port of 1 to 5 digits and an optional
	// weight cover every gap the loop above can leave.
	for k := 1; k <= svcname.MaxLen; k++ {
		for _, port := range []int{1, 10, 100, 1000, 10000} {
			for _, w := range []int{0, 1, 10, 100, 1000} {
				last := Service{Name: svcname.Must(strings.Repeat("z", k)), Port: port, Weight: w}
				if out := append(slices.Clone(svcs), last); encoded(out) == size {
					return out
				}
			}
		}
	}
	t.Fatalf("no services encode to exactly %d bytes", size)
	return nil
}

// TestLargestBroadcastIsSent checks maxBroadcast against memberlist: a
// record of exactly that size reaches a peer by broadcast, with periodic
// push/pull off.
func TestLargestBroadcastIsSent(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{name: "plain", mod: func(*Config) {}},
		{name: "encrypted", mod: func(c *Config) { c.Memberlist.SecretKey = bytes.Repeat([]byte{7}, 32) }},
		{name: "keys", mod: func(c *Config) { c.Keys = [][]byte{bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{8}, 32)} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mod := func(c *Config) {
				c.Memberlist.PushPullInterval = 0
				tc.mod(c)
			}
			a := newNodeWith(t, "a", "broadcast-size-test", 1, mod)
			b := newNodeWith(t, "b", "broadcast-size-test", 2, mod)
			join(t, b, a)
			svcs := servicesOfSize(t, a, a.maxBcast)
			a.SetServices(svcs)
			waitFor(t, "b gets a's record", func() error {
				for _, e := range b.Catalog() {
					if e.Node == "a" && len(e.Services) == len(svcs) {
						return nil
					}
				}
				return fmt.Errorf("b catalog: %d entries, none for a with %d services", len(b.Catalog()), len(svcs))
			})
		})
	}
}

func TestCatalogAddrFromMemberlist(t *testing.T) {
	c, d := newOffline(t, "a")
	d.NotifyJoin(mlNode("a", "10.0.0.1", memberlist.StateAlive))
	d.NotifyJoin(mlNode("b", "10.0.0.2", memberlist.StateAlive))
	c.merge([]record{{Entry: Entry{Node: "b", Addr: "10.6.6.6", DataPort: 7000, Version: 1}}}, false)
	addrs := func() []string {
		var out []string
		for _, e := range c.Catalog() {
			out = append(out, e.Node+"="+e.Addr)
		}
		return out
	}
	if got, want := addrs(), []string{"a=10.0.0.1", "b=10.0.0.2"}; !slices.Equal(got, want) {
		t.Errorf("Catalog addrs: got %q, want %q", got, want)
	}
	// b restarts on a new address; its record is unchanged.
	d.NotifyLeave(mlNode("b", "10.0.0.2", memberlist.StateAlive))
	d.NotifyJoin(mlNode("b", "10.0.0.3", memberlist.StateAlive))
	if got, want := addrs(), []string{"a=10.0.0.1", "b=10.0.0.3"}; !slices.Equal(got, want) {
		t.Errorf("Catalog addrs after b moved: got %q, want %q", got, want)
	}
}

// TestShutdownDoesNotWaitForJoin joins a peer that accepts the connection
// and never answers, so memberlist's Join blocks for TCPTimeout, and checks
// that Shutdown returns meanwhile and the Join then fails.
func TestShutdownDoesNotWaitForJoin(t *testing.T) {
	ln, accepted := silentPeer(t)

	c := newNodeWith(t, "a", "test", 1, func(cfg *Config) { cfg.Memberlist.TCPTimeout = time.Hour })
	joined := make(chan error, 1)
	go func() {
		_, err := c.Join([]string{ln.Addr().String()})
		joined <- err
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
		t.Cleanup(func() { conn.Close() })
	case err := <-joined:
		t.Fatalf("Join returned before the peer answered: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("Join never connected")
	}

	shutdownWithin(t, c, "a hanging Join")

	// Shutdown ends the Join's stream (the peer never hangs up), so the
	// Join fails and leaks no goroutine.
	select {
	case err := <-joined:
		if err == nil {
			t.Error("Join cut off by Shutdown: got nil error")
		}
	case <-time.After(waitTimeout):
		t.Fatal("Join did not return after Shutdown")
	}
}

// TestNameConflict runs a second node named "a" at another port. Joining
// through a third node c, it learns that a live node holds its name, while
// c keeps the first "a" it knew and hears of no conflict of its own (c does
// not pass the twin's alive message on, so the first a need not hear of
// it). memberlist reports a twin that joins the first a directly on both
// sides, but only the twin, which started later, hears that its name is
// taken: the first a only logs it.
func TestNameConflict(t *testing.T) {
	claimed := make(chan struct{}, 1)
	a := newNodeWith(t, "a", "conflict-test", 1, func(c *Config) {
		c.Logger = slog.New(&noticeHandler{msg: "claims this node's name", c: claimed})
	})
	c := newNode(t, "c", "conflict-test", 3)
	join(t, c, a)

	expect := func(who string, got *Cluster, others ...*Cluster) {
		t.Helper()
		select {
		case m := <-got.Conflicts():
			if m.Name != "a" || m.Addr != "127.0.0.1" || !slices.ContainsFunc(others, func(o *Cluster) bool { return o.GossipPort() == m.Port }) {
				t.Errorf("%s: conflict with %+v, want a at 127.0.0.1:%d", who, m, others[0].GossipPort())
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s: no conflict reported within %v", who, waitTimeout)
		}
	}
	// The join itself succeeds (memberlist exchanged state); the twin
	// finds its name taken in what it received.
	twin := newNode(t, "a", "conflict-test", 2)
	join(t, twin, c)
	expect("twin joining through c", twin, a)
	select {
	case m := <-c.Conflicts():
		t.Errorf("c: conflict %+v reported, want none (its own name is not claimed)", m)
	default:
	}
	for _, m := range c.Members() {
		if m.Name == "a" && m.Port != a.GossipPort() {
			t.Errorf("c: a is at port %d, want the first a's %d", m.Port, a.GossipPort())
		}
	}

	twin2 := newNode(t, "a", "conflict-test", 4)
	join(t, twin2, a)
	expect("twin joining a directly", twin2, a)
	// a has heard of the conflict (it logs it in the callback that would
	// report it) and keeps its name.
	select {
	case <-claimed:
	case <-time.After(waitTimeout):
		t.Fatalf("a: no warning about the twin within %v", waitTimeout)
	}
	select {
	case m := <-a.Conflicts():
		t.Errorf("a: conflict %+v reported, want none (a started first and holds the name)", m)
	default:
	}
}

// noticeHandler discards log records but signals c (without blocking) for
// each one whose message contains msg.
type noticeHandler struct {
	msg string
	c   chan struct{}
}

func (h *noticeHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *noticeHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *noticeHandler) WithGroup(string) slog.Handler            { return h }
func (h *noticeHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.msg) {
		select {
		case h.c <- struct{}{}:
		default:
		}
	}
	return nil
}

// TestDecodeMeta: both metadata versions decode (version 1, sent up to
// session 9, has no flags; this release's version 2 says it knows
// kindGreet and kindStateFlate); anything else carries no start time.
func TestDecodeMeta(t *testing.T) {
	t0 := time.Unix(1700000000, 5)
	v2 := encodeMeta(t0, true)
	for _, tc := range []struct {
		name   string
		meta   []byte
		want   nodeMeta
		wantOK bool
	}{
		{"version 2, announces", v2, nodeMeta{started: t0.UnixNano(), offer: offerServices, greets: true, flate: true}, true},
		{"version 2, announces nothing", encodeMeta(t0, false), nodeMeta{started: t0.UnixNano(), offer: offerNothing, greets: true, flate: true}, true},
		// Session 12 sent metaGreets without metaStateFlate.
		{"version 2 before metaStateFlate", append(v2[:9:9], metaServes|metaGreets), nodeMeta{started: t0.UnixNano(), offer: offerServices, greets: true}, true},
		// Sessions 10 and 11 sent the flags byte without metaGreets.
		{"version 2 before metaGreets, announces", append(v2[:9:9], metaServes), nodeMeta{started: t0.UnixNano(), offer: offerServices}, true},
		{"version 2 before metaGreets, announces nothing", append(v2[:9:9], 0), nodeMeta{started: t0.UnixNano(), offer: offerNothing}, true},
		{"version 1", append([]byte{1}, v2[1:9]...), nodeMeta{started: t0.UnixNano()}, true},
		{"version 1 with a flags byte", append([]byte{1}, v2[1:]...), nodeMeta{}, false},
		{"version 2 without flags", append([]byte{2}, v2[1:9]...), nodeMeta{}, false},
		{"unknown version", append([]byte{3}, v2[1:]...), nodeMeta{}, false},
		{"none", nil, nodeMeta{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := decodeMeta(tc.meta)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("decodeMeta(%x): got %+v, %v; want %+v, %v", tc.meta, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestHoldsName checks who keeps a name two nodes claim: the one that
// started first, at the same nanosecond the lower address, and a peer
// that sends no start time (an older release) only while this node is new.
func TestHoldsName(t *testing.T) {
	node := func(ip string, port uint16, meta []byte) *memberlist.Node {
		return &memberlist.Node{Name: "a", Addr: net.ParseIP(ip), Port: port, Meta: meta}
	}
	t0 := time.Unix(1700000000, 5)
	early, late := encodeMeta(t0, false), encodeMeta(t0.Add(time.Millisecond), true)
	young := encodeMeta(time.Now(), false) // well within legacyNameWindow while the test runs
	earlyV1 := append([]byte{metaVersion1}, early[1:9]...)
	for _, tc := range []struct {
		name        string
		self, other *memberlist.Node
		want        bool
	}{
		{"other started earlier", node("10.0.0.2", 7946, late), node("10.0.0.9", 7946, early), true},
		{"other started later", node("10.0.0.9", 7946, early), node("10.0.0.2", 7946, late), false},
		{"same start, other's address lower", node("10.0.0.9", 7946, early), node("10.0.0.2", 7946, early), true},
		{"same start, other's address higher", node("10.0.0.2", 7946, early), node("10.0.0.9", 7946, early), false},
		{"same start and address, other's port lower", node("10.0.0.2", 7947, early), node("10.0.0.2", 7946, early), true},
		{"same start, IPv4 in 4 and 16 bytes", &memberlist.Node{Name: "a", Addr: net.ParseIP("10.0.0.9").To4(), Port: 7946, Meta: early}, node("10.0.0.2", 7946, early), true},
		{"other sends no start time, this node is new", node("10.0.0.2", 7946, young), node("10.0.0.9", 7946, nil), true},
		{"other sends a version-1 meta (up to session 9) and started earlier", node("10.0.0.2", 7946, late), node("10.0.0.9", 7946, earlyV1), true},
		{"other sends a meta of another version, this node is new", node("10.0.0.2", 7946, young), node("10.0.0.9", 7946, append([]byte{9}, early[1:]...)), true},
		// An established node does not give way to a namesake of an older
		// release: that release gives way itself only in its first 30 s,
		// so giving way here too could stop both.
		{"other sends no start time, this node has run for long", node("10.0.0.2", 7946, early), node("10.0.0.9", 7946, nil), false},
		{"other sends a meta of another version, this node has run for long", node("10.0.0.2", 7946, early), node("10.0.0.9", 7946, append([]byte{9}, early[1:]...)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := holdsName(tc.self, tc.other); got != tc.want {
				t.Errorf("holdsName: got %v, want %v", got, tc.want)
			}
			// Exactly one of two twins that both send a start time gives way.
			if _, ok := decodeMeta(tc.other.Meta); ok {
				if back := holdsName(tc.other, tc.self); back == tc.want {
					t.Errorf("holdsName the other way round: got %v too", back)
				}
			}
		})
	}
}
