package mesh

import (
	"context"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
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
