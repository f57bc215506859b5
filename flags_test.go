package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRepeatedFlags: a flag that takes one value may be given once on the
// command line; a second one used to win without a word. A repeatable
// (slice) flag may come back, and a flag on the command line over its
// AMBASSADOR_* variable is no repeat. The node's validation error for
// --gossip-port 0 shows that a command line got past its flags.
func TestRepeatedFlags(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStderr string
	}{
		// Each node command line ends in --gossip-port 0, so that the old
		// code, which took the last value, stopped there too.
		{name: "node string flag", args: []string{"--http", "127.0.0.1:1", "--http", "127.0.0.1:2", "--gossip-port", "0"}, wantCode: 2,
			wantStderr: `--http is given twice ("127.0.0.1:1", then "127.0.0.1:2"): it takes one value`},
		{name: "log level", args: []string{"--log-level", "debug", "--log-level", "warn", "--gossip-port", "0"}, wantCode: 2,
			wantStderr: `--log-level is given twice ("debug", then "warn")`},
		{name: "with =", args: []string{"--cluster=a", "--cluster=b", "--gossip-port", "0"}, wantCode: 2, wantStderr: `--cluster is given twice`},
		{name: "int flag", args: []string{"--data-port", "1", "--data-port", "2", "--gossip-port", "0"}, wantCode: 2, wantStderr: `--data-port is given twice ("1", then "2")`},
		{name: "duration flag", args: []string{"--drain-timeout", "1s", "--drain-timeout", "2s", "--gossip-port", "0"}, wantCode: 2, wantStderr: `--drain-timeout is given twice`},
		{name: "bool flag", args: []string{"--no-mdns", "--no-mdns=false", "--gossip-port", "0"}, wantCode: 2, wantStderr: `--no-mdns is given twice ("true", then "false")`},
		{name: "run command", args: []string{"run", "--node", "a", "--node", "b", "--gossip-port", "0"}, wantCode: 2, wantStderr: `--node is given twice`},
		{name: "forward command", args: []string{"forward", "--idle-timeout", "1s", "--idle-timeout", "-2s", "6380=10.0.0.5:6379"}, wantCode: 2, wantStderr: `--idle-timeout is given twice`},
		{name: "reading command", args: []string{"members", "--http", "127.0.0.1:1", "--http", "127.0.0.1:2"}, wantCode: 2, wantStderr: `--http is given twice`},
		{name: "watch", args: []string{"watch", "--recent", "--recent", "--http", "nonsense"}, wantCode: 2, wantStderr: `--recent is given twice`},
		{name: "announce socket", args: []string{"announce", "--socket", "/nonexistent/a", "--socket", "/nonexistent/b", "redis:6379=12345"}, wantCode: 2, wantStderr: `--socket is given twice`},
		// Repeatable flags stay repeatable.
		{name: "slice flags repeat", args: []string{"--forward", "redis", "--forward", "web", "--join", "10.0.0.1", "--join", "10.0.0.2",
			"--announce", "redis:6379=12345", "--announce", "web:8080=80", "--iface", "lo", "--iface", "lo", "--gossip-port", "0"},
			wantCode: 2, wantStderr: "--gossip-port: 0"},
		// The command line wins over the environment: no repeat.
		{name: "command line over variable", env: map[string]string{"AMBASSADOR_CLUSTER": "a"}, args: []string{"--cluster", "b", "--gossip-port", "0"},
			wantCode: 2, wantStderr: "--gossip-port: 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"ambassador"}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Fatalf("got exit %d, stderr %q; want exit %d, stderr containing %q", code, stderr.String(), tc.wantCode, tc.wantStderr)
			}
			if strings.Contains(tc.wantStderr, "twice") && strings.Count(strings.TrimSpace(stderr.String()), "\n") > 0 {
				t.Errorf("usage error should be one line, got %q", stderr.String())
			}
		})
	}
}

// TestBadFlagValue: a value the flag's kind cannot take is bad usage
// naming the flag as it is written (--name) and what it wants; it was the
// flag package's `invalid value "abc" for flag -data-port: parse error`.
func TestBadFlagValue(t *testing.T) {
	tests := []struct {
		args       []string
		wantStderr string
	}{
		{[]string{"--data-port", "abc"}, `--data-port: "abc" is not a whole number`},
		{[]string{"--drain-timeout", "5"}, `--drain-timeout: "5" is not a duration such as 30s or 1m30s`},
		{[]string{"--no-mdns=yes"}, `--no-mdns: "yes" is not true or false`},
		{[]string{"forward", "--idle-timeout", "soon", "1=2"}, `--idle-timeout: "soon" is not a duration`},
		{[]string{"watch", "--recent=maybe"}, `--recent: "maybe" is not true or false`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"ambassador"}, tc.args...), &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Fatalf("got exit %d, stderr %q; want exit 2, stderr with %q", code, stderr.String(), tc.wantStderr)
			}
		})
	}
}
