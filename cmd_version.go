package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// buildInfo is what `ambassador version` prints.
type buildInfo struct {
	Version  string // -ldflags -X main.version, else the main module's version ("(devel)" in a checkout)
	Commit   string // vcs.revision, "" when built without VCS stamping (-buildvcs=false, no .git)
	Modified bool   // vcs.modified: the work tree had uncommitted changes
	Go       string // the toolchain that built the binary
}

// readBuildInfo reads the binary's build info; ldVersion (main.version)
// wins over the module version when set.
func readBuildInfo(bi *debug.BuildInfo, ok bool, ldVersion string) buildInfo {
	var b buildInfo
	if ok {
		b.Version, b.Go = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if ldVersion != "" {
		b.Version = ldVersion
	}
	if b.Version == "" {
		b.Version = "unknown"
	}
	return b
}

// String is the one-line form, for --version.
func (b buildInfo) String() string {
	s := b.Version
	if b.Commit != "" {
		s += " (" + b.Commit[:min(12, len(b.Commit))]
		if b.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s
}

// Lines is the form `ambassador version` prints.
func (b buildInfo) Lines() string {
	var w strings.Builder
	fmt.Fprintf(&w, "ambassador %s\n", b.Version)
	commit := b.Commit
	if commit == "" {
		commit = "unknown (built without VCS information)"
	} else if b.Modified {
		commit += " (modified)"
	}
	fmt.Fprintf(&w, "commit     %s\n", commit)
	fmt.Fprintf(&w, "go         %s\n", b.Go)
	return w.String()
}

func currentBuild() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	return readBuildInfo(bi, ok, version)
}

func versionCmd(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("version: unexpected argument %q", c.Args().First())
	}
	_, err := fmt.Fprint(c.App.Writer, currentBuild().Lines())
	return err
}
