package mesh

import (
	"strconv"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// TestServicesViewLocalState: a service whose own instance holds the
// address it would be forwarded on has no listener, and the services view
// says "local", not "none" (not forwarded), whichever way that address
// came: its port, or a --forward address on the instance's port, wildcard,
// loopback or localhost. A --forward elsewhere is a listener.
func TestServicesViewLocalState(t *testing.T) {
	for _, tc := range []struct {
		name    string
		port    func(echo int) int // the service's port
		forward func(echo int) string
		want    string
	}{
		{"on its own port", func(echo int) int { return echo }, nil, "local"},
		{"wildcard forward on the target port", func(int) int { return 80 }, func(echo int) string { return "0.0.0.0:" + strconv.Itoa(echo) }, "local"},
		{"loopback forward on the target port", func(int) int { return 80 }, func(echo int) string { return "127.0.0.1:" + strconv.Itoa(echo) }, "local"},
		{"localhost forward on the target port", func(int) int { return 80 }, func(echo int) string { return "localhost:" + strconv.Itoa(echo) }, "local"},
		{"forward on another port", func(int) int { return 80 }, func(int) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }, "listening"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := echoServer(t)
			a := startTestNode(t, "a", func(c *Config) {
				c.Announce = []Announce{{Name: "web", Port: tc.port(echo), Host: "127.0.0.1", TargetPort: echo}}
				c.Checks = map[svcname.Name]health.Check{"web": {Kind: health.KindNone}}
				if tc.forward != nil {
					c.Forward = []Forward{{Name: "web", Listen: tc.forward(echo)}}
				}
			})
			// A listener opens with the first reconcile after the start.
			var got ServiceView
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if got = webView(a.Node); got.State == tc.want {
					break
				}
			}
			if got.State != tc.want {
				t.Fatalf("web: state %q, want %q", got.State, tc.want)
			}
			if tc.want == "local" && got.Listen != "" {
				t.Errorf("web: listen %q, want none: the service owns its address", got.Listen)
			}
		})
	}
}

// webView is service web in n's services view, or a zero ServiceView.
func webView(n *Node) ServiceView {
	for _, sv := range n.ServicesView().Services {
		if sv.Name == "web" {
			return sv
		}
	}
	return ServiceView{}
}
