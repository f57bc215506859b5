package main

import (
	"os/exec"
	"strings"
	"testing"
)

// releaseSymbols returns the names in go tool nm's output for the release
// binary, after checking that the table holds names every ambassador has.
func releaseSymbols(t *testing.T, must ...string) map[string]bool {
	t.Helper()
	bin := releaseBinary(t)
	out, err := exec.Command("go", "tool", "nm", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool nm %s: %v\n%s", bin, err, out)
	}
	syms := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 { // address, kind, name
			syms[strings.Join(f[2:], " ")] = true
		}
	}
	for _, m := range append([]string{"main.newApp"}, must...) {
		if !syms[m] {
			t.Fatalf("%s not in go tool nm's output (%d symbols): not the binary expected", m, len(syms))
		}
	}
	return syms
}

// TestReleaseBinaryHasNoNetRPC: the release build links no net/rpc, nor
// what only net/rpc brought in (encoding/gob, html/template). Upstream
// go-msgpack's codec/rpc.go and msgpack.go import net/rpc for codecs
// nothing here uses, and net/rpc's init parses an html/template in every
// node (issue 10; third_party/go-msgpack/PATCHES.md, docs/memory.md). It
// fails if the replace line in go.mod goes, or a new dependency imports
// net/rpc again; then it names the package.
func TestReleaseBinaryHasNoNetRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binary")
	}
	syms := releaseSymbols(t, "github.com/hashicorp/go-msgpack/v2/codec.(*Decoder).Decode")
	for _, banned := range []string{"net/rpc.", "encoding/gob.", "html/template."} {
		n, example := 0, ""
		for s := range syms {
			if strings.HasPrefix(s, banned) {
				n++
				example = s
			}
		}
		if n > 0 {
			t.Errorf("the release binary links %d %s* symbols (e.g. %s): see third_party/go-msgpack/PATCHES.md", n, banned, example)
		}
	}
}
