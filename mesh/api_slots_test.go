package mesh

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestControlSocketSlotsForOperator: the control socket serves at most
// maxControlConns connections at once and is open to every local user.
// A user who may not change the node could take every slot with
// read-only requests that never end (GET /v1/events streams until the
// client goes), and the operator's own announce then waited in the
// kernel's backlog for as long as that user liked. Slots must remain for
// root and the node's user.
func TestControlSocketSlotsForOperator(t *testing.T) {
	echo := echoServer(t)
	self := uint32(os.Geteuid())
	other := uint32(4242)
	if other == self {
		other++
	}
	var conns atomic.Int64 // the first maxControlConns connections are other's
	n := startTestNode(t, "a", func(c *Config) {
		c.peerUID = func(net.Conn) (uint32, error) {
			if conns.Add(1) <= maxControlConns {
				return other, nil
			}
			return self, nil
		}
	})
	var streams int
	for range maxControlConns {
		c, err := net.Dial("unix", n.cfg.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, "GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			// A connection past the others' slots is answered 503 and
			// closed at once, so the request may meet a closed socket.
			continue
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			continue // refused: the slots left are the operator's
		}
		if resp.StatusCode == http.StatusOK {
			streams++
		}
	}
	t.Logf("uid %d holds %d event streams", other, streams)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var resp AnnounceRequest
	spec := "web:" + strconv.Itoa(freePort(t)) + "=127.0.0.1:" + strconv.Itoa(echo)
	if err := CallSocket(ctx, n.cfg.Socket, "POST", "/v1/announce", AnnounceRequest{Announce: spec}, &resp); err != nil {
		t.Fatalf("announce as the node's own uid while uid %d holds %d streams: %v", other, streams, err)
	}
}
