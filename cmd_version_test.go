package main

import (
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestReadBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "true"},
	}}
	tests := []struct {
		name       string
		bi         *debug.BuildInfo
		ok         bool
		ld         string
		wantLine   string
		wantOutput string
	}{
		{name: "stamped and modified", bi: stamped, ok: true, wantLine: "v1.2.3 (0123456789ab, modified)",
			wantOutput: "ambassador v1.2.3\ncommit     0123456789abcdef0123456789abcdef01234567 (modified)\ngo         go1.26.8\n"},
		{name: "ldflags version wins", bi: stamped, ok: true, ld: "v9.9.9", wantLine: "v9.9.9 (0123456789ab, modified)",
			wantOutput: "ambassador v9.9.9\ncommit     0123456789abcdef0123456789abcdef01234567 (modified)\ngo         go1.26.8\n"},
		{name: "no vcs stamping", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, ok: true, wantLine: "(devel)",
			wantOutput: "ambassador (devel)\ncommit     unknown (built without VCS information)\ngo         go1.26.8\n"},
		{name: "no build info", ok: false, wantLine: "unknown",
			wantOutput: "ambassador unknown\ncommit     unknown (built without VCS information)\ngo         \n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := readBuildInfo(tt.bi, tt.ok, tt.ld)
			if got := b.String(); got != tt.wantLine {
				t.Errorf("String() = %q, want %q", got, tt.wantLine)
			}
			if got := b.Lines(); got != tt.wantOutput {
				t.Errorf("Lines() = %q, want %q", got, tt.wantOutput)
			}
		})
	}
}

// TestVersionCommand runs the built binary: it names the Go toolchain that
// built it and says whether it knows its commit.
func TestVersionCommand(t *testing.T) {
	out, err := exec.Command(binary, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("ambassador version: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ambassador ") || !strings.HasPrefix(lines[1], "commit ") || lines[2] != "go         "+runtime.Version() {
		t.Fatalf("ambassador version printed:\n%s", out)
	}
	if out, err := exec.Command(binary, "version", "extra").CombinedOutput(); err == nil {
		t.Fatalf("version with an argument succeeded: %s", out)
	}
}
