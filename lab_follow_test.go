package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
)

// startRedis runs a throwaway redis-server in h on 127.0.0.1:port (or on
// every address with bindAll) and waits until it answers.
func startRedis(t *testing.T, h *lab.Host, port int, bindAll bool) *lab.Proc {
	t.Helper()
	bind := "127.0.0.1"
	if bindAll {
		bind = "0.0.0.0"
	}
	p := h.Start("redis-"+strconv.Itoa(port), "redis-server", "--save", "", "--appendonly", "no",
		"--bind", bind, "--port", strconv.Itoa(port), "--protected-mode", "no", "--dir", h.Dir)
	lab.WaitFor(t, 10*time.Second, "redis on "+h.Name, func() bool {
		out, _ := h.Run(5*time.Second, "redis-cli", "-p", strconv.Itoa(port), "ping")
		return strings.TrimSpace(out) == "PONG"
	})
	return p
}

func redisCLI(t *testing.T, h *lab.Host, port int, args ...string) string {
	t.Helper()
	out, err := h.Run(10*time.Second, append([]string{"redis-cli", "-p", strconv.Itoa(port)}, args...)...)
	if err != nil {
		t.Fatalf("redis-cli %v on %s: %v: %s", args, h.Name, err, out)
	}
	return strings.TrimSpace(out)
}

// parseOK reads "ok=N failed=M" from the last line of a ping-loop log.
func parseOK(t *testing.T, log string) (ok, failed int) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if _, err := fmt.Sscanf(lines[len(lines)-1], "ok=%d failed=%d", &ok, &failed); err != nil {
		t.Fatalf("ping-loop output: %q", log)
	}
	return ok, failed
}

func waitNodesOn(t *testing.T, h *lab.Host, service string, n int) time.Duration {
	t.Helper()
	out := helper(t, h, 40*time.Second, "wait-nodes", service, strconv.Itoa(n), "30")
	var ms, at int64
	if _, err := fmt.Sscanf(out, "after=%d at=%d", &ms, &at); err != nil {
		t.Fatalf("wait-nodes on %s: %q", h.Name, out)
	}
	return time.Duration(ms) * time.Millisecond
}

// startWaitNodes starts wait-nodes in h in the background; waitedAt gives
// the moment it saw the service on n nodes.
func startWaitNodes(t *testing.T, h *lab.Host, service string, n int) *lab.Proc {
	return startHelper(t, h, "wait-nodes-"+service, "wait-nodes", service, strconv.Itoa(n), "30")
}

func waitedAt(t *testing.T, p *lab.Proc) time.Time {
	t.Helper()
	if code, err := p.Wait(40 * time.Second); err != nil || code != 0 {
		t.Fatalf("wait-nodes: exit %d, %v: %s", code, err, p.Log())
	}
	var ms, at int64
	if _, err := fmt.Sscanf(strings.TrimSpace(p.Log()), "after=%d at=%d", &ms, &at); err != nil {
		t.Fatalf("wait-nodes output: %q", p.Log())
	}
	return time.UnixMilli(at)
}

// TestLabFailover has two Redis replicas and a client host opening a new
// connection every 100 ms. Health: stopping one Redis withdraws it
// everywhere; starting it brings it back. kill -9 of one replica's
// ambassador costs the client no failed connection. Then the other host's
// link goes down: it leaves every catalog, and the client is refused at
// once rather than left hanging.
func TestLabFailover(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "redis-server", "redis-cli")
	r1, r2, c, d := l.AddHost("r1"), l.AddHost("r2"), l.AddHost("c"), l.AddHost("d")
	redis1 := startRedis(t, r1, 12345, false)
	startRedis(t, r2, 12345, false)
	flags := []string{"--check", "redis=redis", "--check-interval", "500ms", "--check-timeout", "250ms"}
	node1 := startNode(r1, append([]string{"--announce", "redis:6379=12345"}, flags...)...)
	startNode(r2, append([]string{"--announce", "redis:6379=12345"}, flags...)...)
	startNode(c)
	startNode(d)
	waitNodesOn(t, c, "redis", 2)
	waitNodesOn(t, d, "redis", 2)

	t.Run("health check withdraws a stopped Redis and brings it back", func(t *testing.T) {
		redisCLI(t, r1, 12345, "shutdown", "nosave")
		if _, err := redis1.Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("FIGURE stopped Redis withdrawn from c's catalog after %s (check interval 500ms)", waitNodesOn(t, c, "redis", 1))
		waitNodesOn(t, d, "redis", 1)
		startRedis(t, r1, 12345, false)
		t.Logf("FIGURE restarted Redis back in c's catalog after %s", waitNodesOn(t, c, "redis", 2))
	})

	t.Run("kill -9 of one replica's ambassador costs no connection", func(t *testing.T) {
		loop := startHelper(t, c, "ping-loop", "ping-loop", "127.0.0.1:6379", "100", "60")
		time.Sleep(1500 * time.Millisecond) // let the loop run against both replicas first
		if err := node1.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, err := loop.Wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		ok, failed := parseOK(t, loop.Log())
		t.Logf("FIGURE kill -9 of a replica's ambassador, new connection every 100ms from c: %d ok, %d failed", ok, failed)
		if failed != 0 || ok != 60 {
			t.Fatalf("ping loop: %d ok, %d failed, want 60 ok and 0 failed:\n%s", ok, failed, loop.Log())
		}
	})

	t.Run("a host whose link goes down leaves every catalog, then clients are refused", func(t *testing.T) {
		waitNodesOn(t, c, "redis", 1)
		wc, wd := startWaitNodes(t, c, "redis", 0), startWaitNodes(t, d, "redis", 0)
		down := time.Now()
		if _, err := r2.Run(5*time.Second, "ip", "link", "set", "eth0", "down"); err != nil {
			t.Fatal(err)
		}
		gc, gd := waitedAt(t, wc).Sub(down).Round(time.Millisecond), waitedAt(t, wd).Sub(down).Round(time.Millisecond)
		t.Logf("FIGURE host with its link down gone from c's catalog after %s, from d's after %s (lan profile)", gc, gd)
		start := time.Now()
		if got := helper(t, c, 10*time.Second, "dial", "127.0.0.1:6379"); got != "refused" {
			t.Fatalf("dial 6379 on c: got %q, want refused", got)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("refusal took %s", el)
		}
	})
}

// TestLabMigration moves Redis from host a to host b under a steady stream
// of new connections from c: no connection fails, and data written after
// the move lands on b.
func TestLabMigration(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "redis-server", "redis-cli")
	a, b, c := l.AddHost("a"), l.AddHost("b"), l.AddHost("c")
	startRedis(t, a, 12345, false)
	startRedis(t, b, 12345, false)
	startNode(a, "--announce", "redis:6379=12345")
	startNode(b)
	startNode(c)
	waitNodesOn(t, c, "redis", 1)

	loop := startHelper(t, c, "ping-loop", "ping-loop", "127.0.0.1:6379", "50", "120")
	time.Sleep(time.Second) // a second of traffic to a alone
	if out, err := b.Run(10*time.Second, binary, "announce", "--socket", socketOf(b), "redis:6379=12345"); err != nil {
		t.Fatalf("announce on b: %v: %s", err, out)
	}
	waitNodesOn(t, c, "redis", 2)
	if out, err := a.Run(10*time.Second, binary, "drain", "--socket", socketOf(a), "redis"); err != nil {
		t.Fatalf("drain on a: %v: %s", err, out)
	}
	moved := waitNodesOn(t, c, "redis", 1)
	t.Logf("FIGURE drained service gone from c's catalog after %s", moved)
	if _, err := loop.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	ok, failed := parseOK(t, loop.Log())
	t.Logf("FIGURE graceful move a->b, new connection every 50ms from c: %d ok, %d failed", ok, failed)
	if failed != 0 {
		t.Fatalf("ping loop during the move: %d failed:\n%s", failed, loop.Log())
	}
	if got := redisCLI(t, c, 6379, "set", "after-move", "yes"); got != "OK" {
		t.Fatalf("set through c: %q", got)
	}
	if got := redisCLI(t, b, 12345, "get", "after-move"); got != "yes" {
		t.Fatalf("b's Redis: get after-move = %q, want yes", got)
	}
	if got := redisCLI(t, a, 12345, "get", "after-move"); got != "" {
		t.Fatalf("a's Redis has the key written after the move: %q", got)
	}
}

// TestLabBalance spreads connections from one host over three instances:
// 300 sequential ones under round-robin (exactly even), and under the
// default least-conn 30 held open at once (exactly ten each), then, once
// the ten to one instance close, ten more that must all go to it: random
// or round-robin would not.
func TestLabBalance(t *testing.T) {
	l := lab.New(t)
	hs := []*lab.Host{l.AddHost("w1"), l.AddHost("w2"), l.AddHost("w3")}
	rr, lc := l.AddHost("rr"), l.AddHost("lc")
	for _, h := range hs {
		startHelper(t, h, "web", "serve-name", "127.0.0.1:18080", h.Name)
		startHelper(t, h, "held", "serve-name-hold", "127.0.0.1:18081", h.Name)
		startNode(h, "--announce", "web:8080=18080", "--announce", "held:8081=18081")
	}
	startNode(rr, "--balance", "web=round-robin")
	startNode(lc)
	waitNodesOn(t, rr, "web", 3)
	waitNodesOn(t, lc, "held", 3)
	if got := helper(t, rr, time.Minute, "count-names", "127.0.0.1:8080", "300"); got != "w1=100 w2=100 w3=100" {
		t.Fatalf("round-robin: got %q, want 100 each", got)
	}
	got := helper(t, lc, time.Minute, "hold-names", "127.0.0.1:8081", "held", "30")
	t.Logf("FIGURE least-conn (default), 30 connections held open, then the 10 to w1 closed and 10 opened: %s", strings.ReplaceAll(got, "\n", "; "))
	if want := "held: w1=10 w2=10 w3=10\nrefill: w1=10"; got != want {
		t.Fatalf("least-conn: got %q, want %q", got, want)
	}
}

// TestLabUpstreamSRV resolves Redis through an SRV record served by a real
// bind9 in its own host; when the record changes and named reloads, new
// connections follow within the TTL.
func TestLabUpstreamSRV(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "redis-server", "redis-cli", "named")
	ns, s1, s2, u, c := l.AddHost("ns"), l.AddHost("s1"), l.AddHost("s2"), l.AddHost("u"), l.AddHost("c")
	for _, h := range []*lab.Host{s1, s2} {
		startRedis(t, h, 16379, true)
		redisCLI(t, h, 16379, "set", "who", h.Name)
	}
	zone := func(serial int, target *lab.Host) string {
		return fmt.Sprintf(`$TTL 2
@ IN SOA ns.example.lab. admin.example.lab. %d 60 60 600 2
@ IN NS ns.example.lab.
ns IN A %s
s1 IN A %s
s2 IN A %s
_redis._tcp IN SRV 10 1 16379 %s.example.lab.
`, serial, ns.Addr, s1.Addr, s2.Addr, target.Name)
	}
	zfile := filepath.Join(ns.Dir, "example.lab.zone")
	if err := os.WriteFile(zfile, []byte(zone(1, s1)), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(ns.Dir, "named.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	listen-on port 53 { %[2]s; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
};
zone "example.lab" { type master; file "%[3]s"; };
`, ns.Dir, ns.Addr, zfile)), 0o644); err != nil {
		t.Fatal(err)
	}
	named := ns.Start("named", "named", "-g", "-u", "root", "-c", conf)
	lab.WaitFor(t, 15*time.Second, "named to load the zone", func() bool {
		return strings.Contains(named.Log(), "all zones loaded")
	})
	startNode(u, "--upstream", "redis:6379=srv:_redis._tcp.example.lab", "--resolver", ns.Addr)
	startNode(c)
	waitNodesOn(t, c, "redis", 1)
	if got := redisCLI(t, c, 6379, "get", "who"); got != "s1" {
		t.Fatalf("through c: who = %q, want s1", got)
	}
	if err := os.WriteFile(zfile, []byte(zone(2, s2)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := named.Signal(syscall.SIGHUP); err != nil { // named reloads its zones on SIGHUP
		t.Fatal(err)
	}
	changed := time.Now()
	lab.WaitFor(t, 20*time.Second, "new connections to follow the SRV record to s2", func() bool {
		out, _ := c.Run(5*time.Second, "redis-cli", "-p", "6379", "get", "who")
		return strings.TrimSpace(out) == "s2"
	})
	t.Logf("FIGURE SRV change followed by new connections after %s (record TTL 2s, re-resolution at least every 5s)", time.Since(changed).Round(time.Millisecond))
}
