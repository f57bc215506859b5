package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dockerBuildArgs returns the flags of the Dockerfile's `go build` line,
// with ${VERSION} set to version, so that the test builds exactly what the
// image would. The Docker engine itself is not needed (nor available in CI).
func dockerBuildArgs(t *testing.T, version string) []string {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "RUN CGO_ENABLED=0 go build "
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		args := splitQuoted(strings.ReplaceAll(strings.TrimPrefix(line, prefix), "${VERSION}", version))
		// Drop "-o PATH" and the package: the test picks its own output.
		for i := 0; i < len(args); i++ {
			if args[i] == "-o" {
				return args[:i]
			}
		}
		t.Fatalf("Dockerfile build line has no -o: %q", line)
	}
	t.Fatalf("Dockerfile has no line starting %q", prefix)
	return nil
}

// splitQuoted splits a shell word list with double quotes (enough for the
// Dockerfile's line; no escapes).
func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case r == ' ' && !inQuote:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// dynamic reports what makes an ELF file depend on a loader: a PT_INTERP
// program header or DT_NEEDED libraries.
func dynamic(t *testing.T, path string) []string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var why []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			why = append(why, "PT_INTERP")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	return append(why, libs...)
}

// TestDockerBuildIsStatic builds the binary with the Dockerfile's command
// line and checks it is static (no interpreter, no shared library) and
// runs, with the version the build set. The race-enabled test binary is
// the negative control: cgo makes it dynamic, and the check says so.
func TestDockerBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary again; skipped in -short mode")
	}
	args := dockerBuildArgs(t, "v0.0.0-dockertest")
	out := filepath.Join(t.TempDir(), "ambassador")
	cmd := exec.Command("go", append(append([]string{"build"}, args...), "-o", out, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, b)
	}
	if why := dynamic(t, out); len(why) > 0 {
		t.Fatalf("the Dockerfile's build is not static: %v", why)
	}
	v, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(v), "ambassador v0.0.0-dockertest\n") {
		t.Fatalf("static binary's version: %v: %s", err, v)
	}
	if raceEnabled && len(dynamic(t, binary)) == 0 {
		t.Fatal("the race-enabled build looks static too: the check cannot tell")
	}
}
