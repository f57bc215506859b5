package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
)

// nobody is the uid and gid the lab runs the CLI as to play another local
// user; setpriv needs no account for it.
const nobody = "65534"

// asNobody runs the ambassador CLI in h as uid and gid 65534 with no
// supplementary groups, and returns its output and exit status.
func asNobody(t *testing.T, h *lab.Host, args ...string) (string, int) {
	t.Helper()
	out, err := h.Run(15*time.Second, append([]string{"setpriv", "--reuid=" + nobody, "--regid=" + nobody, "--clear-groups", binary}, args...)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	t.Fatalf("ambassador %v as uid %s on %s: %v: %s", args, nobody, h.Name, err, out)
	return "", 0
}

// catalogOn is every service h's node knows and the nodes that offer it,
// as "name=node1,node2" sorted.
func catalogOn(t *testing.T, h *lab.Host) []string {
	t.Helper()
	var out []string
	for _, s := range services(t, h).Services {
		out = append(out, s.Name+"="+strings.Join(s.Nodes, ","))
	}
	return out
}

// TestLabControlSocket is the control API's trust boundary on real hosts:
// another local user (uid 65534) can read the node's documents but cannot
// announce or drain (exit 1, the node's refusal, and a peer's catalog
// unchanged), while root can; a second node cannot take a running node's
// socket.
func TestLabControlSocket(t *testing.T) {
	l := lab.New(t)
	needBinaries(t, "setpriv")
	a, b := l.AddHost("a"), l.AddHost("b")
	// The socket's folders must be open to other users for them to reach
	// it at all (the test's temporary folders are 0700): the refusal must
	// come from the node, not from file modes.
	for dir := a.Dir; dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := socketOf(a)
	startHelper(t, a, "sha-service", "serve-sha", "127.0.0.1:12400")
	startNode(a, "--announce", "keep:7000=12400")
	startNode(b)
	waitNodesOn(t, b, "keep", 1)
	nameA := nodeName(t, a)
	want := []string{"keep=" + nameA}
	if got := catalogOn(t, b); !slices.Equal(got, want) {
		t.Fatalf("b's catalog before: got %q, want %q", got, want)
	}

	const refusal = "ambassador: node refused the request: only root may change this node's announcements, not uid 65534"
	t.Run("another user cannot announce or drain", func(t *testing.T) {
		for _, args := range [][]string{
			{"announce", "--socket", sock, "evil:7001=12400"},
			{"drain", "--socket", sock, "keep"},
		} {
			out, code := asNobody(t, a, args...)
			t.Logf("FIGURE ambassador %s as uid 65534: exit %d: %s", args[0], code, strings.TrimSpace(out))
			if code != 1 || !strings.Contains(out, refusal) {
				t.Fatalf("ambassador %v as uid 65534: exit %d, %q; want exit 1 and %q", args, code, out, refusal)
			}
		}
		// Reads are open to every local user, as on the status address.
		if out, code := asNobody(t, a, "services", "--socket", sock); code != 0 || !strings.Contains(out, "keep") {
			t.Fatalf("services as uid 65534: exit %d: %s", code, out)
		}
		// Long enough for an announcement or a drain to reach b, had one
		// gone through (a second of gossip on the lan profile).
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if got := catalogOn(t, b); !slices.Equal(got, want) {
				t.Fatalf("b's catalog after the refused calls: got %q, want %q", got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("root can announce and drain", func(t *testing.T) {
		if out, err := a.Run(10*time.Second, binary, "announce", "--socket", sock, "extra:7002=12400"); err != nil || !strings.Contains(out, "announced extra") {
			t.Fatalf("announce as root: %v: %s", err, out)
		}
		waitNodesOn(t, b, "extra", 1)
		if out, err := a.Run(10*time.Second, binary, "drain", "--socket", sock, "keep"); err != nil || !strings.Contains(out, "withdrawn keep") {
			t.Fatalf("drain as root: %v: %s", err, out)
		}
		waitNodesOn(t, b, "keep", 0)
		if got, want := catalogOn(t, b), []string{"extra=" + nameA}; !slices.Equal(got, want) {
			t.Fatalf("b's catalog after root's calls: got %q, want %q", got, want)
		}
	})

	t.Run("a second node cannot take the socket", func(t *testing.T) {
		c := l.AddHost("c")
		p := c.Start("ambassador-second", binary, "--socket", sock)
		code, err := p.Wait(30 * time.Second)
		if err != nil || code != 1 || !strings.Contains(p.Log(), "another process answers on it") {
			t.Fatalf("second node on a's socket: exit %d, %v; want exit 1 and a clear error:\n%s", code, err, p.Log())
		}
		if out, err := a.Run(10*time.Second, binary, "services", "--socket", sock); err != nil || !strings.Contains(out, "extra") {
			t.Fatalf("a's socket after the second node gave up: %v: %s", err, out)
		}
	})
}
