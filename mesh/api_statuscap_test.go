package mesh

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestStatusAddressConnCap: the status address serves read-only
// documents to anyone who reaches it, on a LAN address if the operator
// binds one, and GET /v1/events streams until the client goes, each with
// its goroutine, connection buffers and a 256-event queue. The control
// socket bounds its connections (maxControlConns); the status address
// bounded none, so one client could hold any number of streams. Beyond the
// cap a connection must wait, not be served.
func TestStatusAddressConnCap(t *testing.T) {
	n := startTestNode(t, "a", func(*Config) {})
	const tries = 2 * maxControlConns
	served := 0
	for range tries {
		c, err := net.Dial("tcp", n.cfg.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			continue // waiting for a slot
		}
		if resp.StatusCode == http.StatusOK {
			served++
		}
	}
	if served > maxControlConns {
		t.Errorf("status address serves %d event streams at once, want at most %d", served, maxControlConns)
	}
}
