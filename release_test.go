package main

import (
	"debug/buildinfo"
	"os"
	"strings"
	"testing"
)

// releaseTags are the build tags of the release build. Every place that
// builds it (the Taskfile's build task, the Dockerfile, the README's
// install line and the scale lab's releaseBinary) uses exactly these:
//   - urfave_cli_no_docs leaves out urfave/cli's man page and markdown
//     generators;
//   - nethttpomithttp2 leaves out net/http's bundled HTTP/2. Every HTTP
//     the node speaks is plain http:// (the status API, its clients,
//     http: health checks), where Go uses HTTP/1.1 anyway; the bundle
//     was 0.55 MB of text, rodata and pclntab mapped into every node,
//     nearly all of it resident (issue 10).
const releaseTags = "urfave_cli_no_docs,nethttpomithttp2"

// TestReleaseBuildLinesAgree checks that every release build line passes
// releaseTags, so a node built by hand, by the Taskfile or in the image
// is the one the scale lab measures.
func TestReleaseBuildLinesAgree(t *testing.T) {
	for file, marker := range map[string]string{
		"Taskfile.yml": "go build ",
		"Dockerfile":   "go build ",
		"README.md":    "CGO_ENABLED=0 go build ", // its other go commands are not the release build
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		builds := 0
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, marker) {
				continue
			}
			builds++
			if !strings.Contains(line, "-tags "+releaseTags+" ") {
				t.Errorf("%s: release build without -tags %s: %s", file, releaseTags, strings.TrimSpace(line))
			}
		}
		if builds == 0 {
			t.Errorf("%s: no release build line found", file)
		}
	}
}

// releaseBuildTags returns the -tags a binary was built with.
func releaseBuildTags(t *testing.T, path string) string {
	t.Helper()
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("build info of %s: %v", path, err)
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" {
			return s.Value
		}
	}
	return ""
}
