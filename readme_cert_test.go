package main

import (
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/trust"
)

// readmeBlock returns the shell block that follows marker in README.md.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- "+marker+" -->\n```sh\n")
	if !ok {
		t.Fatalf("README.md has no ```sh block after <!-- %s -->", marker)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md: the block after <!-- %s --> does not end", marker)
	}
	return block
}

// TestREADMECertRecipe runs the README's OpenSSL lines for the operator-CA
// mode, exactly as written (only the node name changes), and checks that
// the certificates they make load and open a data-plane handshake between
// two nodes of the cluster, and not for another cluster.
func TestREADMECertRecipe(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl binary (Debian package openssl)")
	}
	dir := t.TempDir()
	sh := func(script string) {
		t.Helper()
		cmd := exec.Command("sh", "-eu", "-c", script)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("README recipe: %v\n%s\nscript:\n%s", err, out, script)
		}
	}
	sh(readmeBlock(t, "cert-recipe-ca"))
	node := readmeBlock(t, "cert-recipe-node")
	const assign = "CLUSTER=ambassador NODE=web1\n"
	if !strings.Contains(node, assign) {
		t.Fatalf("README node recipe lost its line %q", assign)
	}
	for _, name := range []string{"a", "b"} {
		sh(strings.Replace(node, assign, "CLUSTER=ambassador NODE="+name+"\n", 1))
	}

	load := func(name, cluster string) (*trust.CA, error) {
		return trust.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"), cluster)
	}
	a, err := load("a", "ambassador")
	if err != nil {
		t.Fatalf("load a: %v", err)
	}
	if a.Node() != "a" {
		t.Errorf("a's node: got %q, want %q", a.Node(), "a")
	}
	b, err := load("b", "ambassador")
	if err != nil {
		t.Fatalf("load b: %v", err)
	}
	if _, err := load("a", "elsewhere"); err == nil {
		t.Error("a's certificate loads for cluster elsewhere, want an error")
	}

	cc, sc := a.ClientConfig("b"), b.ServerConfig()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	_ = c1.SetDeadline(time.Now().Add(10 * time.Second))
	_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(c2, sc).Handshake() }()
	if err := tls.Client(c1, cc).Handshake(); err != nil {
		t.Fatalf("client a to server b: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server b accepting a: %v", err)
	}
}
