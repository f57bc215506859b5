package mesh

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// TestStatusAPIListensWhereTold: --http 0.0.0.0:PORT listens on IPv4
// only, as the data port, the forwarders and --dns do (internal/listennet):
// Go's "tcp" would open [::], every IPv6 address as well.
func TestStatusAPIListensWhereTold(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	port := strconv.Itoa(freePort(t))
	startTestNode(t, "a", func(c *Config) { c.HTTP = "0.0.0.0:" + port })
	if c, err := net.DialTimeout("tcp4", "127.0.0.1:"+port, 2*time.Second); err != nil {
		t.Errorf("127.0.0.1:%s: %v, want the status API", port, err)
	} else {
		c.Close()
	}
	if c, err := net.DialTimeout("tcp6", "[::1]:"+port, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("--http 0.0.0.0:%s: [::1]:%s connected, want refused", port, port)
	}
}
