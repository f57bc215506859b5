package mesh

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// TestReloadDuringFirstPublish: a reload (SIGHUP) that lands while Run
// publishes the node's first record is what the cluster sees once the node
// is up, not the older view Run took before it. Run's first publish holds
// pubMu as publish does: the reload's own publish comes after it.
func TestReloadDuringFirstPublish(t *testing.T) {
	echo := echoServer(t)
	cfg := testNodeConfig(t, "a", func(*Config) {})
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reloaded := cfg
	reloaded.Announce = []Announce{{Name: "web", Port: 80, Host: "127.0.0.1", TargetPort: echo}}
	reloaded.Checks = map[svcname.Name]health.Check{"web": {Kind: health.KindNone}} // offered at once
	reloadDone := make(chan error, 1)
	n.firstView = func() {
		go func() { reloadDone <- n.Reload(reloaded) }()
		// Old code: the reload publishes now, and Run's older view
		// follows it. With pubMu held here it waits for Run instead.
		select {
		case err := <-reloadDone:
			reloadDone <- err
		case <-time.After(200 * time.Millisecond):
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-n.Ready():
	case err := <-done:
		done <- nil
		t.Fatalf("Run: %v", err)
	}
	if err := <-reloadDone; err != nil {
		t.Fatalf("Reload: %v", err)
	}
	var got []string
	for _, e := range n.cluster.Catalog() {
		if e.Node == n.name {
			for _, s := range e.Services {
				got = append(got, s.Name.String())
			}
		}
	}
	if len(got) != 1 || got[0] != "web" {
		t.Fatalf("this node's record after a reload during its first publish: services %v, want [web]", got)
	}
}

// TestFailedStartDoesNotClaimToLeave: a node whose start fails (a port
// in use, at each step that opens one) returns an error that names the
// step, and undoes what it started without logging "leaving" and
// "stopped": it never ran, so it has nothing to leave.
func TestFailedStartDoesNotClaimToLeave(t *testing.T) {
	for _, tc := range []struct {
		name string
		busy func(c *Config) string // the address the test takes first
		want string                 // in Run's error
	}{
		{"data port", func(c *Config) string { return net.JoinHostPort(c.Bind, strconv.Itoa(c.DataPort)) }, "mesh: data port"},
		{"gossip port", func(c *Config) string { return net.JoinHostPort(c.Bind, strconv.Itoa(c.GossipPort)) }, "mesh: gossip on port"},
		{"status address", func(c *Config) string { return c.HTTP }, "mesh: status api"},
		{"dns address", func(c *Config) string {
			c.DNS = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
			return c.DNS
		}, "mesh: dns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testutil.Buffer
			var addr string
			cfg := testNodeConfig(t, "a", func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
				addr = tc.busy(c)
			})
			if strings.Contains(tc.name, "dns") {
				pc, err := net.ListenPacket("udp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			n, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = n.Run(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: got %v, want an error with %q", err, tc.want)
			}
			for line := range strings.Lines(logs.String()) {
				if strings.Contains(line, "component=mesh") && (strings.Contains(line, "msg=leaving") || strings.Contains(line, "msg=stopped")) {
					t.Errorf("a node that never started logged: %s", strings.TrimSpace(line))
				}
			}
		})
	}
}
