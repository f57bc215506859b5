package mesh

import (
	"maps"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/forward"
	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
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

// TestMovedListenerConnsStayActive: a connection keeps running when its
// listener moves to another address (a --forward re-bound on reload, or a
// second service on its port sending both to loopback addresses of their
// own), and the service's open connections in the status, the metrics and
// the connections view still count it until it closes.
func TestMovedListenerConnsStayActive(t *testing.T) {
	for _, tc := range []struct {
		name string
		move func(t *testing.T, a *testNode, port int)
	}{
		{"forward re-bound on reload", func(t *testing.T, a *testNode, _ int) {
			cfg := a.cfg
			cfg.Forward = []Forward{{Name: "echo", Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))}}
			if err := a.Reload(cfg); err != nil {
				t.Fatal(err)
			}
		}},
		{"a second service on its port", func(t *testing.T, a *testNode, port int) {
			if err := a.Announce(Announce{Name: "other", Port: port, Host: "127.0.0.1", TargetPort: echoServer(t)}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := echoServer(t)
			port := freePort(t)
			a := startTestNode(t, "a", func(c *Config) {
				c.Announce = []Announce{{Name: "echo", Port: port, Host: "127.0.0.1", TargetPort: echo}}
				c.Checks = map[svcname.Name]health.Check{"echo": {Kind: health.KindNone}}
			})
			listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			waitFor(t, 10*time.Second, "a's listener", func() bool { return echoOnce(listen) == nil })
			c, err := net.Dial("tcp", listen)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			roundTrip := func(b byte) {
				t.Helper()
				buf := []byte{b}
				if _, err := c.Write(buf); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil || buf[0] != b {
					t.Fatalf("echo through the open connection: read %q, %v", buf, err)
				}
			}
			roundTrip('x')
			tc.move(t, a, port)
			waitFor(t, 10*time.Second, "echo's listener to move", func() bool {
				ls := a.proxy.Status()
				return slices.ContainsFunc(ls, func(s forward.ListenerStatus) bool { return s.Service == "echo" && s.Listen != listen })
			})
			roundTrip('y') // the connection runs on
			active := func() (status, metric, traffic uint64) {
				for _, sv := range a.ServicesView().Services {
					if sv.Name == "echo" {
						status = sv.Active
					}
				}
				v, _ := metricValue(scrape(t, a.cfg.HTTP), "ambassador_connections_active", "service=echo")
				for _, tr := range a.ConnectionsView().Traffic {
					if tr.Service == "echo" {
						traffic += tr.Active
					}
				}
				return status, uint64(v), traffic
			}
			if s, m, tr := active(); s != 1 || m != 1 || tr != 1 {
				t.Fatalf("one connection open through echo's old listener: active %d in the services view, %d in the metrics, %d in the traffic; want 1", s, m, tr)
			}
			c.Close()
			waitFor(t, 10*time.Second, "active 0 once the connection closed", func() bool {
				s, m, tr := active()
				return s == 0 && m == 0 && tr == 0
			})
		})
	}
}

// TestOpenElsewhere: the open connections whose listener (service and
// address) is not among the listeners now are counted by service.
func TestOpenElsewhere(t *testing.T) {
	listeners := []forward.ListenerStatus{
		{Service: "web", Listen: "127.0.0.1:8081"},
		{Service: "pg", Listen: "127.0.0.1:5432"},
	}
	for _, tc := range []struct {
		name  string
		conns []forward.ConnStatus
		want  map[string]uint64
	}{
		{"none open", nil, nil},
		{"through the listeners now", []forward.ConnStatus{{Service: "web", Listen: "127.0.0.1:8081"}, {Service: "pg", Listen: "127.0.0.1:5432"}}, nil},
		{"through a listener that moved", []forward.ConnStatus{{Service: "web", Listen: "127.0.0.1:8080"}, {Service: "web", Listen: "127.0.0.1:8080"}, {Service: "web", Listen: "127.0.0.1:8081"}},
			map[string]uint64{"web": 2}},
		{"through a listener that closed", []forward.ConnStatus{{Service: "redis", Listen: "127.0.0.1:6379"}}, map[string]uint64{"redis": 1}},
		{"another service's address now", []forward.ConnStatus{{Service: "web", Listen: "127.0.0.1:5432"}}, map[string]uint64{"web": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := openElsewhere(listeners, tc.conns); !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
