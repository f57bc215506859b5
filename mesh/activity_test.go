package mesh

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// TestActivityCountsConnectionsOfClosedListeners: a connection keeps
// running when its listener closes (the service was withdrawn, or its
// listener moved to a loopback address of its own when a second service
// came to its port), and Activity still counts it as open, or the
// GOMAXPROCS governor would take the node down to one CPU under it.
func TestActivityCountsConnectionsOfClosedListeners(t *testing.T) {
	echo := echoServer(t)
	port := freePort(t)
	a := startTestNode(t, "a", func(c *Config) {
		c.Announce = []Announce{{Name: "echo", Port: port, Host: "127.0.0.1", TargetPort: echo}}
	})
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitFor(t, 10*time.Second, "a's listener", func() bool { return echoOnce(listen) == nil })
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, open := a.Activity(); open != 1 {
		t.Fatalf("one connection through the listener: Activity open = %d, want 1", open)
	}
	if err := a.Withdraw("echo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the listener to close", func() bool { return len(a.proxy.Status()) == 0 })
	// The connection runs on.
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err != nil || buf[0] != 'y' {
		t.Fatalf("the open connection after the withdraw: read %q, %v", buf, err)
	}
	if _, open := a.Activity(); open != 1 {
		t.Fatalf("the connection still open, its listener closed: Activity open = %d, want 1", open)
	}
}
