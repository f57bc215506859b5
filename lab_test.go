package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
	"github.com/ambassador-mesh/ambassador/mesh"
)

// binary is the ambassador built once for the lab by TestMain.
var binary string

func TestMain(m *testing.M) {
	if mode := os.Getenv("AMB_LAB_HELPER"); mode != "" {
		os.Exit(labHelper(mode, os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "ambassador-lab-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Other users run the binary in the control-socket lab.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ambassador")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ambassador for the lab: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// self is this test binary, run inside hosts as a traffic helper.
func self(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// helper runs the traffic helper in h and returns its output.
func helper(t *testing.T, h *lab.Host, timeout time.Duration, mode string, args ...string) string {
	t.Helper()
	out, err := h.Run(timeout, append([]string{"env", "AMB_LAB_HELPER=" + mode, self(t)}, args...)...)
	if err != nil {
		t.Fatalf("helper %s %v on %s: %v: %s", mode, args, h.Name, err, out)
	}
	return strings.TrimSpace(out)
}

func startHelper(t *testing.T, h *lab.Host, name, mode string, args ...string) *lab.Proc {
	return h.Start(name, append([]string{"env", "AMB_LAB_HELPER=" + mode, self(t)}, args...)...)
}

// socketOf is the control socket of h's node: every lab host shares the
// machine's /run, so each node gets its own in its host's folder.
func socketOf(h *lab.Host) string { return filepath.Join(h.Dir, "ambassador.sock") }

// startNode runs a node in h and waits until it answers on its control
// socket (so that a helper that fails on any error can ask it at once).
// The lab's teardown fails the test if the node crashes or does not exit
// 0 on SIGTERM.
func startNode(h *lab.Host, args ...string) *lab.Proc {
	sock := socketOf(h)
	args = append([]string{binary, "--log-level", "debug", "--socket", sock}, args...)
	p := h.Start("ambassador", args...).CheckExit()
	p.WaitUntil(20*time.Second, "the node to answer on "+sock, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return mesh.CallSocket(ctx, sock, "GET", "/v1/health", nil, new(map[string]string)) == nil
	})
	return p
}

// services is what `ambassador services --json` says on h. Any error fails
// the test: an empty list must mean the node answered "none".
func services(t *testing.T, h *lab.Host) mesh.Services {
	t.Helper()
	out, err := h.Run(10*time.Second, binary, "services", "--json", "--socket", socketOf(h))
	if err != nil {
		t.Fatalf("services --json on %s: %v: %s", h.Name, err, out)
	}
	var s mesh.Services
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Node == "" {
		t.Fatalf("services --json on %s: %v: %s", h.Name, err, out)
	}
	return s
}

// members is what `ambassador members --json` says on h; any error fails
// the test.
func members(t *testing.T, h *lab.Host) mesh.Members {
	t.Helper()
	out, err := h.Run(10*time.Second, binary, "members", "--json", "--socket", socketOf(h))
	if err != nil {
		t.Fatalf("members --json on %s: %v: %s", h.Name, err, out)
	}
	var m mesh.Members
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Node == "" {
		t.Fatalf("members --json on %s: %v: %s", h.Name, err, out)
	}
	return m
}

// nodeName is the name of h's node.
func nodeName(t *testing.T, h *lab.Host) string {
	t.Helper()
	return members(t, h).Node
}

// sameNames reports whether got and want hold the same names.
func sameNames(got, want []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)))
}

func aliveMembers(t *testing.T, h *lab.Host) []string {
	var names []string
	for _, m := range members(t, h).Members {
		if m.State == "alive" {
			names = append(names, m.Name)
		}
	}
	return names
}

func hostsOf(t *testing.T, h *lab.Host, service string) []string {
	for _, s := range services(t, h).Services {
		if s.Name == service {
			return s.Nodes
		}
	}
	return nil
}

func needBinaries(t *testing.T, bins ...string) {
	t.Helper()
	lab.Need(t, "see .ci/run for the Debian packages", bins...)
}

// TestLabMesh is the mesh issue end to end on four hosts: Redis on A's
// loopback reached from B and C with no configuration; 64 MiB each way
// across two hops; DNS-SD seen by avahi-browse and dig; goodbyes on
// SIGTERM; a SIGKILLed node leaves every catalog and its port refuses.
func TestLabMesh(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "redis-server", "redis-cli")
	a, b, c, d := l.AddHost("a"), l.AddHost("b"), l.AddHost("c"), l.AddHost("d")

	a.Start("redis", "redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", "12345")
	lab.WaitFor(t, 10*time.Second, "redis on a", func() bool {
		out, _ := a.Run(5*time.Second, "redis-cli", "-p", "12345", "ping")
		return strings.TrimSpace(out) == "PONG"
	})
	startHelper(t, d, "sha-service", "serve-sha", "127.0.0.1:12400")
	startHelper(t, d, "blob-service", "serve-blob", "127.0.0.1:12401", fmt.Sprint(64<<20), "2")

	start := time.Now()
	nodeA := startNode(a, "--announce", "redis:6379=12345")
	startNode(b)
	startNode(c)
	nodeD := startNode(d, "--announce", "sha:7000=12400", "--announce", "blob:7001=12401")

	var firstOK time.Duration
	lab.WaitFor(t, 30*time.Second, "redis-cli -p 6379 ping from b", func() bool {
		out, _ := b.Run(5*time.Second, "redis-cli", "-p", "6379", "ping")
		if strings.TrimSpace(out) == "PONG" {
			firstOK = time.Since(start)
			return true
		}
		return false
	})
	t.Logf("FIGURE time from start of 4 nodes to first successful redis-cli via ambassador: %s", firstOK.Round(time.Millisecond))

	if out, err := b.Run(5*time.Second, "redis-cli", "-p", "6379", "set", "lab-key", "from-b"); err != nil || strings.TrimSpace(out) != "OK" {
		t.Fatalf("redis set from b: %v %q", err, out)
	}
	lab.WaitFor(t, 20*time.Second, "redis-cli get from c", func() bool {
		out, _ := c.Run(5*time.Second, "redis-cli", "-p", "6379", "get", "lab-key")
		return strings.TrimSpace(out) == "from-b"
	})

	t.Run("node names are unique on hosts sharing one host name", func(t *testing.T) {
		var names []string
		lab.WaitFor(t, 20*time.Second, "4 alive members on b", func() bool {
			names = aliveMembers(t, b)
			return len(names) == 4
		})
		host, _ := os.Hostname()
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Fatalf("duplicate node name %q in %v", n, names)
			}
			seen[n] = true
			prefix := strings.ToLower(strings.SplitN(host, ".", 2)[0])
			if !strings.HasPrefix(n, prefix[:min(len(prefix), 10)]) {
				t.Errorf("node name %q does not start with the host name %q", n, host)
			}
		}
	})

	t.Run("64 MiB each way across two hops with half-close", func(t *testing.T) {
		lab.WaitFor(t, 20*time.Second, "blob and sha services on c", func() bool {
			return len(hostsOf(t, c, "blob")) == 1 && len(hostsOf(t, c, "sha")) == 1
		})
		up := helper(t, c, 2*time.Minute, "upload", "127.0.0.1:7000", fmt.Sprint(64<<20), "1")
		var sent, reply string
		if _, err := fmt.Sscanf(up, "sent=%s reply=%s", &sent, &reply); err != nil || sent != reply {
			t.Fatalf("upload: got %q, want the service's sha256 of the 64 MiB to equal the client's", up)
		}
		// The reference hash comes from the same generator run locally.
		want := helper(t, c, 2*time.Minute, "upload-ref", fmt.Sprint(64<<20), "2")
		down := helper(t, c, 2*time.Minute, "download", "127.0.0.1:7001")
		if down != fmt.Sprintf("got=%s bytes=%d", want, 64<<20) {
			t.Fatalf("download: got %q, want got=%s bytes=%d", down, want, 64<<20)
		}
	})

	t.Run("avahi-browse and dig see _redis._tcp, goodbye on stop", func(t *testing.T) {
		needBinaries(t, "dig")
		av := c.StartAvahi()
		var out string
		lab.WaitFor(t, 20*time.Second, "avahi-browse on c to resolve _redis._tcp", func() bool {
			out, _ = av.Browse("-rtp", "_redis._tcp")
			return strings.Contains(out, "=;eth0;IPv4;") && strings.Contains(out, ";"+a.Addr+";6379;")
		})
		// dig 9.18 connects its UDP socket to the server address, so a
		// reply to @224.0.0.251 (which must come from a host's own
		// address) never reaches it, from any responder, avahi included.
		// So: dig asks a's responder directly, and the multicast legacy
		// query (RFC 6762 6.7) is checked by the helper, which is not
		// connected and checks the ID and question itself.
		dig, err := c.Run(15*time.Second, "dig", "-p", "5353", "@"+a.Addr, "_redis._tcp.local", "PTR", "+time=3", "+tries=2")
		if err != nil || !strings.Contains(dig, "ANSWER SECTION") || !strings.Contains(dig, "._redis._tcp.local.") {
			t.Fatalf("dig on c: %v\n%s", err, dig)
		}
		if mq := helper(t, c, 15*time.Second, "mdns-legacy", "_redis._tcp.local."); !strings.Contains(mq, "PTR from "+a.Addr+":5353") {
			t.Fatalf("multicast legacy query on c: got %q, want a PTR answer from %s:5353", mq, a.Addr)
		}
		// Stop d gracefully: its goodbye packets must make avahi drop
		// _sha._tcp at once, not after the 120 s TTL.
		lab.WaitFor(t, 20*time.Second, "avahi-browse on c to see _sha._tcp", func() bool {
			out, _ = av.Browse("-tp", "_sha._tcp")
			return strings.Contains(out, "_sha._tcp")
		})
		if err := nodeD.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		if code, err := nodeD.Wait(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("d after SIGTERM: exit %d, %v", code, err)
		}
		lab.WaitFor(t, 10*time.Second, "avahi on c to drop _sha._tcp", func() bool {
			out, _ = av.Browse("-tp", "_sha._tcp")
			return !strings.Contains(out, "_sha._tcp")
		})
		t.Logf("FIGURE avahi dropped _sha._tcp %s after SIGTERM to its node", time.Since(stopped).Round(time.Millisecond))
		if !strings.Contains(nodeD.Log(), "leaving") {
			t.Errorf("d's log does not show a graceful leave")
		}
	})

	t.Run("SIGKILLed node vanishes and its listener refuses", func(t *testing.T) {
		wb, wc := startWaitNodes(t, b, "redis", 0), startWaitNodes(t, c, "redis", 0)
		killed := time.Now()
		if err := nodeA.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		gb, gc := waitedAt(t, wb).Sub(killed).Round(time.Millisecond), waitedAt(t, wc).Sub(killed).Round(time.Millisecond)
		t.Logf("FIGURE a SIGKILLed node left b's catalog after %s, c's after %s (lan profile)", gb, gc)
		lab.WaitFor(t, 10*time.Second, "6379 on b to refuse", func() bool {
			return helper(t, b, 10*time.Second, "dial", "127.0.0.1:6379") == "refused"
		})
	})
}

// TestLabClustersStayApart runs two clusters on one LAN: each node sees
// only the members of its own cluster, and services do not leak across.
func TestLabClustersStayApart(t *testing.T) {
	l := lab.New(t)
	r1, r2, b1, b2 := l.AddHost("r1"), l.AddHost("r2"), l.AddHost("b1"), l.AddHost("b2")
	startHelper(t, r1, "sha-service", "serve-sha", "127.0.0.1:12400")
	startHelper(t, b1, "sha-service", "serve-sha", "127.0.0.1:12400")
	startNode(r1, "--cluster", "red", "--announce", "red-svc:7000=12400")
	startNode(r2, "--cluster", "red")
	startNode(b1, "--cluster", "blue", "--announce", "blue-svc:7001=12400")
	startNode(b2, "--cluster", "blue")
	for _, h := range []*lab.Host{r1, r2, b1, b2} {
		lab.WaitFor(t, 30*time.Second, "2 members on "+h.Name, func() bool { return len(aliveMembers(t, h)) == 2 })
	}
	lab.WaitFor(t, 20*time.Second, "red-svc on r2", func() bool { return len(hostsOf(t, r2, "red-svc")) == 1 })
	lab.WaitFor(t, 20*time.Second, "blue-svc on b2", func() bool { return len(hostsOf(t, b2, "blue-svc")) == 1 })
	// Give the clusters several discovery and gossip rounds to merge if
	// they were going to, then check they did not.
	red, blue := []string{nodeName(t, r1), nodeName(t, r2)}, []string{nodeName(t, b1), nodeName(t, b2)}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, h := range []*lab.Host{r1, r2, b1, b2} {
			want := red
			if h == b1 || h == b2 {
				want = blue
			}
			if n := aliveMembers(t, h); !sameNames(n, want) {
				t.Fatalf("%s sees %v, want exactly %v, its own cluster", h.Name, n, want)
			}
		}
		if len(hostsOf(t, b2, "red-svc")) != 0 || len(hostsOf(t, r2, "blue-svc")) != 0 {
			t.Fatalf("a service crossed clusters")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := helper(t, r2, 10*time.Second, "upload", "127.0.0.1:7000", "1000", "3"); !strings.HasPrefix(got, "sent=") {
		t.Fatalf("red-svc from r2: %q", got)
	}
}
