package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/gossip"
	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// TestLiveAddrs: the join loop reads the member list only when it has
// candidates to check, and then keeps alive and suspect members' gossip
// addresses.
func TestLiveAddrs(t *testing.T) {
	list := []gossip.Member{
		{Name: "a", Addr: "10.0.0.1", Port: 7946, State: "alive"},
		{Name: "b", Addr: "10.0.0.2", Port: 7946, State: "suspect"},
		{Name: "c", Addr: "10.0.0.3", Port: 7946, State: "dead"},
		{Name: "d", Addr: "fe80::1", Port: 7000, State: "left"},
		{Name: "e", Addr: "fe80::2", Port: 7000, State: "alive"},
	}
	for _, tc := range []struct {
		name  string
		need  bool
		calls int
		want  []string
	}{
		{"no candidates: members not read", false, 0, nil},
		{"candidates", true, 1, []string{"10.0.0.1:7946", "10.0.0.2:7946", "[fe80::2]:7000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			got := liveAddrs(tc.need, func() []gossip.Member { calls++; return list })
			if calls != tc.calls {
				t.Errorf("members read %d times, want %d", calls, tc.calls)
			}
			if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, tc.want) {
				t.Errorf("got %v, want %v", keys, tc.want)
			}
		})
	}
}

// TestSeedJoinedOnce: once a node has joined a --join seed, the seed is
// not joined again while it is a live member (each join is a full state
// exchange and an Info line), whichever way the seed is written: an IP
// address, or a host name that resolves to it. A seed that is this node
// itself, as every node's copy of one shared --join list has, is not
// joined over and over either.
func TestSeedJoinedOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		host string
		self bool   // the seed is b itself
		bind string // b's --bind; "": every address, advertising its first interface's
		want int32  // joins of b's own
	}{
		{"ip", "127.0.0.1", false, "127.0.0.1", 1},
		{"host name", "localhost", false, "127.0.0.1", 1},
		{"itself by host name", "localhost", true, "127.0.0.1", 0},
		// Not told apart from another node before the join: joined once,
		// then again only after seedRecheck.
		{"itself by an address it does not advertise", "127.0.0.1", true, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startTestNode(t, "a", func(*Config) {})
			b := startTestNode(t, "b", func(c *Config) {
				port := a.cfg.GossipPort
				if tc.self {
					port = c.GossipPort
				}
				c.Bind = tc.bind
				c.Join = []string{net.JoinHostPort(tc.host, strconv.Itoa(port))}
			})
			want := tc.want
			if !tc.self {
				waitFor(t, 10*time.Second, "b to join a", func() bool { return len(b.MembersView().Members) == 2 })
			}
			// Several of the join loop's 500ms ticks: a seed that is
			// joined again is joined again within one.
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				if got := b.joined.Load(); got > want {
					t.Fatalf("b joined seed %s %d times, want %d", b.cfg.Join[0], got, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestSeedNameWithThisNode: a --join host name that stands for this node
// and another (one name for every node of the cluster) is joined until
// the other node is a member: this node being a member itself does not
// count, nor does a join that reached only this node.
func TestSeedNameWithThisNode(t *testing.T) {
	port := freePort(t)
	seed := net.JoinHostPort("nodes.test", strconv.Itoa(port))
	cfg := testNodeConfig(t, "b", func(c *Config) {
		c.GossipPort = port
		c.Join = []string{seed}
	})
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var lookups atomic.Int32
	b.lookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
		lookups.Add(1)
		if host != "nodes.test" {
			return nil, fmt.Errorf("lookup %s: no such host", host)
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}, nil // b, then a
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("b: Run: %v", err)
		}
	})
	<-b.Ready()
	// b tries the seed before a is up: only b itself could answer. The
	// try is over once it joined (b itself) or tries again.
	waitFor(t, 10*time.Second, "b's first try of the seed", func() bool { return b.joined.Load() > 0 || lookups.Load() > 1 })
	startTestNode(t, "a", func(c *Config) {
		c.Bind = "127.0.0.2"
		c.GossipPort = port
	})
	waitFor(t, 15*time.Second, "b to join a, the seed's other address", func() bool { return len(b.MembersView().Members) == 2 })
}

// TestSeedNotSeenRejoinedQuietly: a seed that never shows up in the
// member list under the address it was joined at (behind NAT, or
// advertising another address) is joined again once per recheck, no
// more often, and only the first join is an Info line: the rest are
// Debug, or an idle node logs "joined" every 30 s for ever.
func TestSeedNotSeenRejoinedQuietly(t *testing.T) {
	// a listens on every address and advertises its interface's (or
	// 127.0.0.1): b's seed, 127.0.0.2, reaches it but is never a member's.
	a := startTestNode(t, "a", func(c *Config) { c.Bind = "" })
	var logs testutil.Buffer
	cfg := testNodeConfig(t, "b", func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Join = []string{net.JoinHostPort("127.0.0.2", strconv.Itoa(a.cfg.GossipPort))}
	})
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The join loop ticks every 5s while it only waits for a recheck, so
	// the recheck comes on the first tick after it is due.
	const recheck = 400 * time.Millisecond
	b.recheck = recheck
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("b: Run: %v", err)
		}
	})
	<-b.Ready()
	start := time.Now()
	const joins = 2
	waitFor(t, 15*time.Second, "b to join its seed again", func() bool { return b.joined.Load() >= joins })
	if took, least := time.Since(start), (joins-1)*recheck; took < least {
		t.Errorf("%d joins of a seed not seen took %v, want at least %v: one per recheck", joins, took, least)
	}
	var info, debug int
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, "component=mesh") || !strings.Contains(line, "peer=127.0.0.2:") {
			continue
		}
		switch {
		case strings.Contains(line, "level=INFO msg=joined"):
			info++
		case strings.Contains(line, "level=DEBUG") && strings.Contains(line, "joined"):
			debug++
		}
	}
	if info != 1 || debug < joins-1 {
		t.Errorf("%d joins of a seed not seen: %d Info and %d Debug lines, want 1 Info, the rest Debug\n%s", b.joined.Load(), info, debug, logs.String())
	}
}
