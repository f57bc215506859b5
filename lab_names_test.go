package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/hostsfile"
	"github.com/ambassador-mesh/ambassador/internal/lab"
)

// TestLabNames: two Redis servers announced under two names on the same
// port (pg-a:6379 on host a, pg-b:6379 on host b) are both reached by name
// from host c, through its --hosts block and the system resolver, and
// resolved by its --dns server; 6379 on
// 127.0.0.1 refuses (which one would it be?). Host d runs its node the way
// a container does, with /etc/hosts a bind mount: the rename fails with
// EBUSY and the block is written in place. At exit each block is removed
// and the files are byte for byte what they were.
func TestLabNames(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "redis-server", "redis-cli", "unshare", "getent", "mount", "dig")
	a, b, c, d := l.AddHost("a"), l.AddHost("b"), l.AddHost("c"), l.AddHost("d")
	for _, h := range []*lab.Host{a, b} {
		h.Start("redis", "redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", "12345")
		lab.WaitFor(t, 10*time.Second, "redis on "+h.Name, func() bool {
			out, _ := h.Run(5*time.Second, "redis-cli", "-p", "12345", "set", "who", h.Name)
			return strings.TrimSpace(out) == "OK"
		})
	}
	// Lines a real hosts file has, one without a final newline on d.
	const original = "127.0.0.1\tlocalhost\n127.0.1.1\tlabhost\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\n"
	cHosts, dHosts := filepath.Join(c.Dir, "hosts"), filepath.Join(d.Dir, "hosts")
	for _, f := range []struct{ path, content string }{{cHosts, original}, {dHosts, strings.TrimSuffix(original, "\n")}} {
		if err := os.WriteFile(f.path, []byte(f.content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	startNode(a, "--announce", "pg-a:6379=12345")
	startNode(b, "--announce", "pg-b:6379=12345")
	nodeC := startNode(c, "--hosts", cHosts, "--dns", "127.0.0.1:5354")
	nodeD := d.Start("ambassador", "unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /etc/hosts && exec "$2" --log-level debug --socket "$3" --hosts /etc/hosts`, "sh", dHosts, binary, socketOf(d))

	block := func(path string) map[string]string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		es, err := hostsfile.Parse(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", path, err, b)
		}
		m := map[string]string{}
		for _, e := range es {
			m[e.Name] = e.Addr.String()
		}
		return m
	}
	var names map[string]string
	lab.WaitFor(t, 30*time.Second, "pg-a and pg-b in c's hosts block", func() bool {
		names = block(cHosts)
		return names["pg-a"] != "" && names["pg-b"] != ""
	})
	t.Logf("c's block: %v", names)
	if names["pg-a"] == names["pg-b"] || !strings.HasPrefix(names["pg-a"], "127.") || strings.HasPrefix(names["pg-a"], "127.0.") {
		t.Fatalf("want two distinct loopback addresses outside 127.0/16, got %v", names)
	}
	if b, _ := os.ReadFile(cHosts); !strings.HasPrefix(string(b), original+hostsfile.Begin+"\n") {
		t.Fatalf("the other lines of c's hosts file changed:\n%s", b)
	}

	// Real name resolution: in a private mount namespace of c, /etc/hosts
	// is the lab file, as it would be on a host whose --hosts is /etc/hosts.
	resolve := func(h *lab.Host, path, script string) (string, error) {
		return h.Run(15*time.Second, "unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" /etc/hosts && `+script, "sh", path)
	}
	for name, want := range map[string]string{"pg-a": "a", "pg-b": "b"} {
		out, err := resolve(c, cHosts, "getent hosts "+name)
		if err != nil || strings.Fields(out)[0] != names[name] {
			t.Fatalf("getent hosts %s on c: %q, %v; want %s", name, out, err, names[name])
		}
		lab.WaitFor(t, 20*time.Second, "redis-cli -h "+name+" on c", func() bool {
			out, _ := resolve(c, cHosts, "redis-cli -h "+name+" -p 6379 get who")
			return strings.TrimSpace(out) == want
		})
	}
	// The same names from --dns.
	for q, want := range map[string]string{
		"pg-a.ambassador A":         names["pg-a"],
		"_pg-b._tcp.ambassador SRV": "0 0 6379 pg-b.ambassador.",
	} {
		out, err := c.Run(10*time.Second, append([]string{"dig", "@127.0.0.1", "-p", "5354", "+short", "+time=2", "+tries=2"}, strings.Fields(q)...)...)
		if err != nil || strings.TrimSpace(out) != want {
			t.Fatalf("dig %s on c: %q, %v; want %q", q, out, err, want)
		}
	}
	if got := helper(t, c, 10*time.Second, "dial", "127.0.0.1:6379"); got != "refused" {
		t.Fatalf("127.0.0.1:6379 on c with two services on 6379: %s, want refused", got)
	}

	// d: a bind-mounted /etc/hosts; its namespace resolves through it.
	lab.WaitFor(t, 30*time.Second, "pg-a and pg-b in d's hosts block", func() bool {
		m := block(dHosts)
		return m["pg-a"] == names["pg-a"] && m["pg-b"] == names["pg-b"]
	})
	if !strings.Contains(nodeD.Log(), "rewriting it in place") {
		t.Errorf("d's log does not say the bind-mounted file was written in place:\n%s", nodeD.Log())
	}
	lab.WaitFor(t, 20*time.Second, "redis-cli -h pg-b on d", func() bool {
		out, _ := resolve(d, dHosts, "redis-cli -h pg-b -p 6379 get who")
		return strings.TrimSpace(out) == "b"
	})

	// At exit the blocks go; the rest is as it was, byte for byte (d's
	// last line got the newline the block needed: the only byte added).
	for _, n := range []struct {
		p    *lab.Proc
		path string
		want string
	}{{nodeC, cHosts, original}, {nodeD, dHosts, original}} {
		if err := n.p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, err := n.p.Wait(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("node after SIGTERM: exit %d, %v\n%s", code, err, n.p.Log())
		}
		if got, _ := os.ReadFile(n.path); string(got) != n.want {
			t.Fatalf("%s after exit:\n%q\nwant\n%q", n.path, got, n.want)
		}
	}
}
