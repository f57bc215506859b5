package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// labKey is the cluster key of the trust lab: 32 bytes, base64; labKey2
// is the key TestLabKey rotates to.
const (
	labKey  = "bGFiLWtleS1mb3ItYW1iYXNzYWRvci10ZXN0cy0zMmI="
	labKey2 = "nurHepAYiImKWoiiOzd/bTsZSGMPc67c9aK7Y1dgITc="
)

// TestLabKey runs three hosts with one key and one without: the keyless
// host sees no members and no services, and its own raw connection to a
// member's data port gets nothing; a capture on the bridge while Redis
// traffic crosses shows none of the payload. Then the key is rotated on
// the running nodes (key file and SIGHUP, three steps) while a client
// opens a connection every 100 ms: none fails, the members stay together,
// and a host with only the old key is kept out.
func TestLabKey(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "redis-server", "redis-cli", "tcpdump")
	a, b, c, x := l.AddHost("a"), l.AddHost("b"), l.AddHost("c"), l.AddHost("x")
	startRedis(t, a, 12345, false)
	startHelper(t, a, "name-service", "serve-name", "127.0.0.1:12400", "the-secret-service")
	startHelper(t, a, "plain-service", "serve-sha", a.Addr+":12500") // the capture's control, outside the mesh
	keyFiles := map[*lab.Host]string{}
	writeKeys := func(h *lab.Host, keys ...string) {
		t.Helper()
		if err := os.WriteFile(keyFiles[h], []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyed := map[*lab.Host]*lab.Proc{}
	for _, h := range []*lab.Host{a, b, c} {
		keyFiles[h] = filepath.Join(t.TempDir(), h.Name+".key")
		writeKeys(h, labKey)
		args := []string{"--key-file", keyFiles[h]}
		if h == a {
			args = append(args, "--announce", "redis:6379=12345", "--announce", "named:7000=12400")
		}
		keyed[h] = startNode(h, args...)
	}
	nodeX := startNode(x)
	for _, h := range []*lab.Host{b, c} {
		waitNodesOn(t, h, "redis", 1)
	}
	if !strings.Contains(nodeX.Log(), "not encrypted") {
		t.Errorf("x runs without a key but did not say that nothing is encrypted")
	}

	keyedNames := []string{nodeName(t, a), nodeName(t, b), nodeName(t, c)}
	t.Run("keyless host sees exactly itself and no services", func(t *testing.T) {
		// Several discovery and gossip rounds: x hears a, b and c over
		// mDNS and tries to join them.
		self := []string{nodeName(t, x)}
		deadline := time.Now().Add(6 * time.Second)
		for time.Now().Before(deadline) {
			if n := aliveMembers(t, x); !sameNames(n, self) {
				t.Fatalf("x sees members %v, want exactly itself %v", n, self)
			}
			if n := aliveMembers(t, b); !sameNames(n, keyedNames) {
				t.Fatalf("b sees members %v, want exactly a, b and c %v", n, keyedNames)
			}
			if s := services(t, x).Services; len(s) != 0 {
				t.Fatalf("x sees services %+v, want none", s)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("a stranger's raw connection to the data port gets nothing", func(t *testing.T) {
		got := helper(t, x, 10*time.Second, "raw-handoff", a.Addr+":7947", "named")
		t.Logf("FIGURE a stranger's plaintext handoff to a keyed data port: %s", got)
		if strings.Contains(got, "the-secret-service") || strings.Contains(got, "PONG") {
			t.Fatalf("raw handoff from x: %s", got)
		}
		var n int
		if _, err := fmt.Sscanf(got, "got %d bytes", &n); err != nil || n > 7 {
			t.Fatalf("raw handoff from x: got %q, want at most a TLS alert (7 bytes) back", got)
		}
	})

	t.Run("no payload in a capture of the bridge", func(t *testing.T) {
		pcap := filepath.Join(t.TempDir(), "bridge.pcap")
		cap := exec.Command("ip", "netns", "exec", l.BridgeNS(), "tcpdump", "-Z", "root", "-i", "any", "--immediate-mode", "-U", "-w", pcap, "tcp")
		var capErr testutil.Buffer
		cap.Stderr = &capErr
		if err := cap.Start(); err != nil {
			t.Fatal(err)
		}
		lab.WaitFor(t, 10*time.Second, "tcpdump to listen", func() bool { return strings.Contains(capErr.String(), "listening on") })
		const marker = "plaintext-marker-8d41c0"
		if got := redisCLI(t, b, 6379, "set", "k", marker); got != "OK" {
			t.Fatalf("set through b: %q", got)
		}
		if got := redisCLI(t, c, 6379, "get", "k"); got != marker {
			t.Fatalf("get through c: %q, want %q", got, marker)
		}
		// The control: the same kind of text sent around the mesh must
		// show up, or the capture proves nothing.
		const control = "plaintext-control-77e2a9"
		helper(t, b, 10*time.Second, "send", a.Addr+":12500", control)
		// Let tcpdump write what it has seen before it stops.
		lab.WaitFor(t, 5*time.Second, "the capture to grow", func() bool {
			st, err := os.Stat(pcap)
			return err == nil && st.Size() > 1000
		})
		_ = cap.Process.Signal(os.Interrupt)
		_ = cap.Wait()
		raw, err := os.ReadFile(pcap)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) < 1000 {
			t.Fatalf("capture is %d bytes: did the traffic cross the bridge? tcpdump said: %s", len(raw), capErr.String())
		}
		if !bytes.Contains(raw, []byte(control)) {
			t.Fatalf("the capture does not contain the control text sent outside the mesh: it sees nothing")
		}
		if bytes.Contains(raw, []byte(marker)) {
			t.Fatalf("the capture of the bridge contains the payload in plaintext")
		}
		t.Logf("FIGURE capture of %d bytes on the bridge while Redis traffic crossed with a key: payload not found", len(raw))
	})

	t.Run("key rotation with SIGHUP costs no connection", func(t *testing.T) {
		loop := startHelper(t, c, "ping-loop-rotation", "ping-loop", "127.0.0.1:6379", "100", "100")
		time.Sleep(time.Second)
		start := time.Now()
		for step, keys := range [][]string{{labKey, labKey2}, {labKey2, labKey}, {labKey2}} {
			for _, h := range []*lab.Host{a, b, c} {
				writeKeys(h, keys...)
				if err := keyed[h].Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
			}
			for _, h := range []*lab.Host{a, b, c} {
				lab.WaitFor(t, 10*time.Second, fmt.Sprintf("step %d of the rotation on %s", step+1, h.Name), func() bool {
					return strings.Count(keyed[h].Log(), "cluster keys replaced") == step+1
				})
			}
			time.Sleep(300 * time.Millisecond) // a few gossip rounds on this step
		}
		t.Logf("FIGURE key rotation in three SIGHUP steps on 3 nodes took %s", time.Since(start).Round(time.Millisecond))
		// The loop runs 10 s, one second of it before the rotation: the
		// rotation must fit well inside it to have run under traffic.
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("the rotation took %s, longer than the traffic around it", took)
		}
		if _, err := loop.Wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		ok, failed := parseOK(t, loop.Log())
		t.Logf("FIGURE key rotation, a new connection every 100ms from c during and after it: %d ok, %d failed", ok, failed)
		if failed != 0 || ok != 100 {
			t.Fatalf("ping loop: %d ok, %d failed, want 100 ok and 0 failed:\n%s", ok, failed, loop.Log())
		}
		// The loop ran on for seconds after the last step, longer than
		// failure detection takes: the members still gossip.
		for _, h := range []*lab.Host{a, b, c} {
			if n := aliveMembers(t, h); !sameNames(n, keyedNames) {
				t.Fatalf("after the rotation %s sees members %v, want exactly a, b and c %v", h.Name, n, keyedNames)
			}
		}
		y := l.AddHost("y")
		startNode(y, "--key", labKey)
		self := []string{nodeName(t, y)}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if n := aliveMembers(t, y); !sameNames(n, self) {
				t.Fatalf("a host with only the old key sees members %v, want exactly itself %v", n, self)
			}
			if n := aliveMembers(t, b); !sameNames(n, keyedNames) {
				t.Fatalf("b sees members %v, want exactly a, b and c %v", n, keyedNames)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
}

// TestLabCredentials: Redis with requirepass, PostgreSQL with scram-sha-256,
// and an HTTP service that wants a bearer token are reached from a client
// host that has no password, because its ambassador holds the credentials;
// with wrong credentials the client gets a clear error.
func TestLabCredentials(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "redis-server", "redis-cli", "psql", "curl", "runuser")
	pgBin := postgresBin(t)
	srv, good, bad := l.AddHost("srv"), l.AddHost("good"), l.AddHost("bad")

	// Redis that wants a password.
	srv.Start("redis-auth", "redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
		"--port", "12345", "--requirepass", "redis-pass")
	lab.WaitFor(t, 10*time.Second, "redis on srv", func() bool {
		out, _ := srv.Run(5*time.Second, "redis-cli", "-p", "12345", "-a", "redis-pass", "--no-auth-warning", "ping")
		return strings.TrimSpace(out) == "PONG"
	})
	// PostgreSQL with scram-sha-256 for TCP clients.
	startPostgres(t, srv, pgBin, 15432, "pg-pass")
	// HTTP with a bearer token.
	startHelper(t, srv, "bearer", "serve-bearer", "127.0.0.1:18080", "tok-123")

	startNode(srv, "--key", labKey, "--announce", "redis:6379=12345", "--announce", "pg:5432=15432",
		"--announce", "web:8080=18080")
	write := func(h *lab.Host, name, content string) string {
		p := filepath.Join(h.Dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	startNode(good, "--key", labKey,
		"--credentials", "redis=redis:"+write(good, "redis.cred", "redis-pass\n"),
		"--credentials", "pg=postgres:"+write(good, "pg.cred", "postgres:pg-pass\n"),
		"--credentials", "web=http-bearer:"+write(good, "web.cred", "tok-123\n"))
	startNode(bad, "--key", labKey,
		"--credentials", "redis=redis:"+write(bad, "redis.cred", "wrong\n"),
		"--credentials", "pg=postgres:"+write(bad, "pg.cred", "postgres:wrong\n"))
	for _, h := range []*lab.Host{good, bad} {
		waitNodesOn(t, h, "redis", 1)
		waitNodesOn(t, h, "pg", 1)
		waitNodesOn(t, h, "web", 1)
	}

	t.Run("redis", func(t *testing.T) {
		if got := redisCLI(t, good, 6379, "set", "k", "v"); got != "OK" {
			t.Fatalf("redis-cli with no password on good: %q", got)
		}
		out, _ := bad.Run(10*time.Second, "redis-cli", "-p", "6379", "ping")
		if !strings.Contains(out, "ambassador") || !strings.Contains(strings.ToLower(out), "auth") {
			t.Fatalf("redis-cli on bad: got %q, want the ambassador's authentication error", out)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		out, err := good.Run(15*time.Second, "psql", "-w", "-h", "127.0.0.1", "-p", "5432", "-U", "app", "-d", "postgres", "-Atc", "select 40+2")
		if err != nil || strings.TrimSpace(out) != "42" {
			t.Fatalf("psql with no password on good: %v: %q", err, out)
		}
		out, err = bad.Run(15*time.Second, "psql", "-w", "-h", "127.0.0.1", "-p", "5432", "-U", "app", "-d", "postgres", "-Atc", "select 1")
		if err == nil || !strings.Contains(out, "ambassador: authentication to postgres failed") {
			t.Fatalf("psql on bad: %v: got %q, want the ambassador's authentication error", err, out)
		}
	})
	t.Run("http bearer", func(t *testing.T) {
		out, err := good.Run(10*time.Second, "curl", "-sS", "http://127.0.0.1:8080/")
		if err != nil || out != "welcome" {
			t.Fatalf("curl on good: %v: %q", err, out)
		}
		out, _ = bad.Run(10*time.Second, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8080/")
		if out != "401" {
			t.Fatalf("curl on bad (no credentials for web): got %q, want 401", out)
		}
	})
}

// postgresBin finds Debian's PostgreSQL server binaries.
func postgresBin(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("lab needs PostgreSQL's server (Debian package postgresql), and under CI .ci/run should have installed it")
	}
	t.Skip("lab needs PostgreSQL's server (Debian package postgresql)")
	return ""
}

// startPostgres makes a cluster in a folder of its own owned by the
// postgres user, with password for the superuser postgres, scram-sha-256
// for TCP and trust on the socket, and runs it in h on 127.0.0.1:port.
func startPostgres(t *testing.T, h *lab.Host, bin string, port int, password string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ambassador-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if out, err := exec.Command("chown", "-R", "postgres:postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	if out, err := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bin, "initdb"), "-D", data,
		"-U", "postgres", "--pwfile", pw, "--auth-host=scram-sha-256", "--auth-local=trust").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	h.Start("postgres", "runuser", "-u", "postgres", "--", filepath.Join(bin, "postgres"), "-D", data,
		"-k", dir, "-h", "127.0.0.1", "-p", fmt.Sprint(port))
	lab.WaitFor(t, 20*time.Second, "postgres on "+h.Name, func() bool {
		_, err := h.Run(5*time.Second, "runuser", "-u", "postgres", "--", "psql", "-h", dir, "-p", fmt.Sprint(port), "-Atc", "select 1")
		return err == nil
	})
}

// TestLabProdStaging runs the same application command on two hosts, one
// in a production cluster and one in staging, each with its own
// credentials file: each reaches its own Redis with its own password.
func TestLabProdStaging(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "redis-server", "redis-cli")
	for _, env := range []string{"prod", "staging"} {
		srv, app := l.AddHost(env[:4]+"db"), l.AddHost(env[:4]+"app")
		pass := env + "-password"
		srv.Start("redis-auth", "redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
			"--port", "12345", "--requirepass", pass)
		lab.WaitFor(t, 10*time.Second, "redis on "+srv.Name, func() bool {
			out, _ := srv.Run(5*time.Second, "redis-cli", "-p", "12345", "-a", pass, "--no-auth-warning", "set", "env", env)
			return strings.TrimSpace(out) == "OK"
		})
		cred := filepath.Join(app.Dir, "redis.cred")
		if err := os.WriteFile(cred, []byte(pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		startNode(srv, "--cluster", env, "--announce", "redis:6379=12345")
		startNode(app, "--cluster", env, "--credentials", "redis=redis:"+cred)
		waitNodesOn(t, app, "redis", 1)
		if got := redisCLI(t, app, 6379, "get", "env"); got != env {
			t.Fatalf("the same command on %s: got %q, want %q", app.Name, got, env)
		}
	}
}
