package forward

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// TestListenWhereTold: a listener on an IPv4 address listens on IPv4 only.
// For 0.0.0.0 Go's "tcp" network opens [::], every IPv6 address as well,
// which a firewall written for IPv4 does not cover; --forward
// NAME=0.0.0.0:PORT and the data port asked for IPv4.
func TestListenWhereTold(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	refusesIPv6 := func(t *testing.T, what, port string) {
		t.Helper()
		if c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", port), 2*time.Second); err != nil {
			t.Errorf("%s: 127.0.0.1:%s: %v, want it listening", what, port, err)
		} else {
			c.Close()
		}
		if c, err := net.DialTimeout("tcp6", net.JoinHostPort("::1", port), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("%s on 0.0.0.0:%s: [::1]:%s connected, want refused", what, port, port)
		}
	}

	t.Run("forward listener", func(t *testing.T) {
		p, err := New(testConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Shutdown(ctx)
		port := strconv.Itoa(testutil.FreePort(t))
		p.Update([]Route{{Service: "svc", Listen: "0.0.0.0:" + port, Backends: []Backend{{Addr: closedAddr(t)}}}})
		refusesIPv6(t, "forward listener", port)
	})
	t.Run("data port", func(t *testing.T) {
		s, err := NewServer(testConfig(t), func(svcname.Name) ([]string, bool) { return nil, false })
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown(ctx)
		if err := s.Start(ctx, "0.0.0.0:0"); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(s.Addr().String())
		refusesIPv6(t, "data port", port)
	})
}
