package gossip

import (
	"net"
	"testing"
	"time"
)

// TestShutdownDoesNotWaitForBackgroundStreams: the streams this node
// opens on its own (joining a node that greeted it, a digest's full-state
// exchange, record requests and greetings) go to peers that may accept and
// never answer, and memberlist bounds each only by TCPTimeout (30s with
// the WAN profile). Shutdown waits for those goroutines, so it must end
// their streams instead of waiting out the timeout. Here a node greets
// this one, answers its ping (greet.go: the greeted node pings the greeter
// before it joins) and accepts streams but never answers on them, so the
// join the greeting prompts hangs.
func TestShutdownDoesNotWaitForBackgroundStreams(t *testing.T) {
	g, accepted := silentNode(t, "g")

	c := newNodeWith(t, "a", "test", 1, func(cfg *Config) { cfg.Memberlist.TCPTimeout = time.Hour })
	c.greeted(greetMsg{
		Record: record{Entry: Entry{Node: "g", Addr: "127.0.0.1", Version: 1, Services: []Service{{Name: "web", Port: 80}}}},
		Addr:   "127.0.0.1", Port: g.GossipPort(), Up: int64(time.Millisecond),
	})
	select {
	case conn := <-accepted:
		t.Cleanup(func() { conn.Close() })
	case <-time.After(waitTimeout):
		t.Fatal("the greeting's join never connected")
	}

	shutdownWithin(t, c, "a join to a peer that never answers")
}

// silentNode starts a node of cluster "test" that answers packets (pings,
// gossip) but never answers on a stream: its transport accepts streams
// and hands them, unread, to accepted instead of to memberlist. It shuts
// down at the test's end.
func silentNode(t *testing.T, name string) (*Cluster, <-chan net.Conn) {
	t.Helper()
	tr, err := newTransport("127.0.0.1", 0, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	c := newNodeWith(t, name, "test", 2, func(cfg *Config) {
		cfg.BindPort = tr.port()
		cfg.Memberlist.Transport = streamless{tr}
	})
	return c, tr.streamCh
}

// streamless is a transport whose streams memberlist never gets (a nil
// channel never delivers); see silentNode.
type streamless struct{ *transport }

func (streamless) StreamCh() <-chan net.Conn { return nil }

// silentPeer listens on loopback, accepts one connection and never
// answers on it: a peer that hangs. The accepted connection comes on
// accepted; the listener closes at the test's end.
func silentPeer(t *testing.T) (net.Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		// Ends when the cleanup closes ln, if Accept is still waiting.
		if conn, err := ln.Accept(); err == nil {
			accepted <- conn
		}
	}()
	return ln, accepted
}

// shutdownWithin fails the test unless c.Shutdown returns, without error,
// within waitTimeout; what names what it must not wait for.
func shutdownWithin(t *testing.T, c *Cluster, what string) {
	t.Helper()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Shutdown() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Shutdown blocked on %s", what)
	}
}
