package mesh

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestControlSocketBodyTimeout: the control socket is open to every local
// user and serves at most maxControlConns connections at once. A request
// whose headers promise a body that never comes held its connection, and
// its slot, for as long as the client kept it open: ReadHeaderTimeout
// covers only the headers, IdleTimeout only the wait between requests,
// and the server reads an unread body to its end after the handler (here
// the refusal of a user who may not change the node) before it answers.
// 64 such connections, from any user, locked the operator out. The
// connection must be answered or closed once the body is late.
func TestControlSocketBodyTimeout(t *testing.T) {
	other := uint32(4242)
	if other == uint32(os.Geteuid()) {
		other++
	}
	n := startTestNode(t, "a", func(c *Config) {
		c.peerUID = func(net.Conn) (uint32, error) { return other, nil }
	})
	c, err := net.Dial("unix", n.cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /v1/announce HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	const wait = 10 * time.Second
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(wait))
	_, err = io.ReadAll(c) // the refusal, then the close
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection with a late body still open after %v, want it closed within %v", time.Since(start).Round(time.Second), wait)
	}
}
