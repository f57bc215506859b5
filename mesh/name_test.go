package mesh

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/gossip"
)

// fakeClaims is a nameClaims whose conflicts the test sends and whose
// ConfirmName answers from confirm, recording each call on calls.
type fakeClaims struct {
	conflicts chan gossip.Member
	confirm   func(ctx context.Context, m gossip.Member) error
	calls     chan gossip.Member
}

func (f *fakeClaims) Conflicts() <-chan gossip.Member { return f.conflicts }

func (f *fakeClaims) ConfirmName(ctx context.Context, m gossip.Member) error {
	f.calls <- m
	return f.confirm(ctx, m)
}

// TestAwaitNameTaken checks the rule at the seam to gossip: a confirmed
// conflict stops the node with an error naming the name and the other
// address, whenever it comes; an unconfirmed one (nothing answers to the
// name there) is logged and the node keeps watching; a cancelled context
// ends the wait without an error.
func TestAwaitNameTaken(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	holder := gossip.Member{Name: "dup", Addr: "10.0.0.9", Port: 7946, State: "alive"}
	stale := gossip.Member{Name: "dup", Addr: "10.0.0.7", Port: 7946, State: "alive"}

	t.Run("confirmed conflict stops", func(t *testing.T) {
		f := &fakeClaims{conflicts: make(chan gossip.Member), calls: make(chan gossip.Member, 4),
			confirm: func(context.Context, gossip.Member) error { return nil }}
		errc := make(chan error, 1)
		go func() { errc <- awaitNameTaken(t.Context(), f, "dup", log) }()
		f.conflicts <- holder
		err := <-errc
		if err == nil || !strings.Contains(err.Error(), `node name "dup" is already taken by a live member at 10.0.0.9:7946`) {
			t.Fatalf("got %v, want an error naming the name and 10.0.0.9:7946", err)
		}
	})

	t.Run("unconfirmed conflict is logged, a later confirmed one stops", func(t *testing.T) {
		f := &fakeClaims{conflicts: make(chan gossip.Member), calls: make(chan gossip.Member, 4),
			confirm: func(_ context.Context, m gossip.Member) error {
				if m.Addr == stale.Addr {
					return errors.New("no answer to 3 pings")
				}
				return nil
			}}
		errc := make(chan error, 1)
		go func() { errc <- awaitNameTaken(t.Context(), f, "dup", log) }()
		f.conflicts <- stale
		<-f.calls
		// The unbuffered send completes only once the loop reads again,
		// that is after it went on past the unconfirmed claim.
		f.conflicts <- holder
		err := <-errc
		if err == nil || !strings.Contains(err.Error(), "10.0.0.9:7946") {
			t.Fatalf("got %v, want an error naming 10.0.0.9:7946 (not the stale 10.0.0.7)", err)
		}
	})

	t.Run("cancelled while confirming", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		f := &fakeClaims{conflicts: make(chan gossip.Member, 1), calls: make(chan gossip.Member, 4),
			confirm: func(ctx context.Context, _ gossip.Member) error {
				cancel()
				return ctx.Err()
			}}
		f.conflicts <- holder
		if err := awaitNameTaken(ctx, f, "dup", log); err != nil {
			t.Fatalf("got %v, want nil once ctx is done", err)
		}
	})

	t.Run("no conflict", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		f := &fakeClaims{conflicts: make(chan gossip.Member), calls: make(chan gossip.Member, 4)}
		if err := awaitNameTaken(ctx, f, "dup", log); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
	})
}

// TestNameTakenAfterStart forms a name conflict between two nodes that
// both run, long after either started, as when two partitions heal: two
// single-node clusters with one name are joined, once by the newcomer
// joining the holder and once the other way round. In both the node that
// started later stops with an error naming the name and the holder's
// address, and the holder keeps running. Before the rule held at any time,
// a conflict met more than 30 s after start was only logged, so the test
// waits until the newcomers have run that long: it takes about 35 s.
func TestNameTakenAfterStart(t *testing.T) {
	type twin struct {
		n    *Node
		errc chan error
	}
	startTwin := func(name string) twin {
		cfg := DefaultConfig()
		cfg.Node = name
		cfg.Bind, cfg.NoMDNS, cfg.Profile, cfg.HTTP = "127.0.0.1", true, "local", ""
		cfg.GossipPort, cfg.DataPort = freePort(t), freePort(t)
		cfg.Socket = shortSocketPath(t)
		cfg.DrainTimeout = time.Second
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		tw := twin{n: n, errc: make(chan error, 1)}
		go func() { tw.errc <- n.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			select {
			case <-tw.errc:
			case <-time.After(20 * time.Second):
				t.Errorf("twin %s did not stop", name)
			}
		})
		select {
		case <-n.Ready():
		case err := <-tw.errc:
			tw.errc <- err
			t.Fatalf("twin %s: Run: %v", name, err)
		}
		return tw
	}
	gossipAt := func(n *Node) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.cluster.GossipPort())) }

	holder1 := startTestNode(t, "dup1", func(*Config) {})
	holder2 := startTestNode(t, "dup2", func(*Config) {})
	late1, late2 := startTwin("dup1"), startTwin("dup2")
	started := time.Now()

	// The old rule's window was 30 s after start.
	<-time.After(time.Until(started.Add(31 * time.Second)))
	for _, tw := range []twin{late1, late2} {
		select {
		case err := <-tw.errc:
			t.Fatalf("twin %s stopped before meeting its namesake: %v", tw.n.name, err)
		default:
		}
	}

	if _, err := late1.n.cluster.Join([]string{gossipAt(holder1.Node)}); err != nil {
		t.Fatalf("newcomer joining the holder: %v", err)
	}
	if _, err := holder2.cluster.Join([]string{gossipAt(late2.n)}); err != nil {
		t.Fatalf("holder joining the newcomer: %v", err)
	}
	for _, c := range []struct {
		tw     twin
		holder *testNode
	}{{late1, holder1}, {late2, holder2}} {
		want := `node name "` + c.holder.cfg.Node + `" is already taken by a live member at ` + gossipAt(c.holder.Node)
		select {
		case err := <-c.tw.errc:
			c.tw.errc <- err // for the cleanup
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("twin %s: Run returned %v, want an error containing %q", c.tw.n.name, err, want)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("twin %s still running 20s after meeting its namesake, want it to stop", c.tw.n.name)
		}
	}

	// The holders heard of the conflict too; had they taken it for their
	// own name being taken, they would be stopping now.
	for _, h := range []*testNode{holder1, holder2} {
		select {
		case err := <-h.done:
			h.done <- err
			t.Errorf("holder %s stopped (%v), want it running", h.cfg.Node, err)
		case <-time.After(3 * time.Second):
		}
		if ms := h.MembersView().Members; len(ms) != 1 || ms[0].Name != h.cfg.Node {
			t.Errorf("holder %s: members %+v, want only itself", h.cfg.Node, ms)
		}
	}
}
