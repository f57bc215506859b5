package main

import (
	"bytes"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ambassador-mesh/ambassador/mesh"
)

// refusingNode serves a control socket that answers reads and refuses
// every change the way a node refuses another user, so the CLI's handling
// of a refusal is tested without a second user.
func refusingNode(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "refusing.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(`{"node":"n","services":[]}`))
			return
		}
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":"only root may change this node's announcements, not uid 65534"}`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestCLIExitCodes(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	refusing := refusingNode(t)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStdout: "reach services on any host"},
		{name: "help command", args: []string{"help", "forward"}, wantCode: 0, wantStdout: "LISTEN=TARGET"},
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: "ambassador"},
		// urfave/cli's own exit status for it is 3.
		{name: "help for no such command", args: []string{"help", "nosuch"}, wantCode: 2, wantStderr: `help: no command "nosuch"`},
		// An argument after a command's --help is no command of the
		// app: it used to say `help: no command "extra" (ambassador help
		// lists them)`, as if forward were not there.
		{name: "argument after a command's help", args: []string{"forward", "-h", "extra"}, wantCode: 2, wantStderr: `help: forward has no command "extra"; ambassador forward --help shows its help`},
		{name: "argument after a command's help command", args: []string{"members", "help", "x"}, wantCode: 2, wantStderr: `help: members has no command "x"`},
		{name: "unknown flag", args: []string{"--nope"}, wantCode: 2, wantStderr: "nope"},
		{name: "bad announce", args: []string{"--announce", "red_is=1"}, wantCode: 2, wantStderr: `--announce "red_is=1"`},
		{name: "bad forward", args: []string{"--forward", "redis=x"}, wantCode: 2, wantStderr: `--forward "redis=x"`},
		{name: "bad gossip port", args: []string{"--gossip-port", "0"}, wantCode: 2, wantStderr: "--gossip-port: 0"},
		{name: "not a number", args: []string{"--data-port", "abc"}, wantCode: 2, wantStderr: "data-port"},
		{name: "bad bind", args: []string{"--bind", "1.2.3"}, wantCode: 2, wantStderr: `--bind: "1.2.3"`},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantCode: 2, wantStderr: "--log-level"},
		{name: "stray argument", args: []string{"redis"}, wantCode: 2, wantStderr: `unexpected argument "redis"`},
		{name: "run subcommand bad flag", args: []string{"run", "--cluster", "a b"}, wantCode: 2, wantStderr: "--cluster"},
		{name: "forward without pairs", args: []string{"forward"}, wantCode: 2, wantStderr: "LISTEN=TARGET"},
		{name: "forward bad pair", args: []string{"forward", "1=x"}, wantCode: 2, wantStderr: `"1=x"`},
		{name: "forward busy port", args: []string{"forward", busy.Addr().String() + "=1"}, wantCode: 1, wantStderr: busy.Addr().String()},
		// An unset shell variable (--iface "$IF") or a trailing comma in
		// AMBASSADOR_IFACE: bad usage, not exit 1 from the interface lookup.
		{name: "empty interface", args: []string{"--iface", "", "--no-mdns", "--http", ""}, wantCode: 2, wantStderr: `--iface: empty interface name`},
		{name: "no such interface", args: []string{"--iface", "nosuch0", "--no-mdns", "--http", ""}, wantCode: 1, wantStderr: `interface "nosuch0"`},
		{name: "missing config file", args: []string{"--config", "/nonexistent/ambassador.conf"}, wantCode: 2, wantStderr: "--config: open /nonexistent/ambassador.conf"},
		// urfave/cli stops reading flags at the first argument: a flag
		// after one is named as such, not as a bad argument.
		{name: "forward flag after pairs", args: []string{"forward", "6380=10.0.0.5:6379", "--idle-timeout", "5m"}, wantCode: 2, wantStderr: `forward: flag "--idle-timeout" after the arguments: flags go first (ambassador forward [flags] LISTEN=TARGET...)`},
		{name: "announce flag after spec", args: []string{"announce", "redis:6379=12345", "--socket", "/nonexistent/amb.sock"}, wantCode: 2, wantStderr: `announce: flag "--socket" after the arguments: flags go first`},
		{name: "drain flag after name", args: []string{"drain", "redis", "--socket=/nonexistent/amb.sock"}, wantCode: 2, wantStderr: `drain: flag "--socket=/nonexistent/amb.sock" after the arguments: flags go first`},
		{name: "announce without spec", args: []string{"announce"}, wantCode: 2, wantStderr: "want at least one"},
		{name: "announce bad spec", args: []string{"announce", "x"}, wantCode: 2, wantStderr: `announce: "x"`},
		{name: "drain without name", args: []string{"drain"}, wantCode: 2, wantStderr: "want a service NAME"},
		{name: "drain bad name", args: []string{"drain", "--socket", "/nonexistent/amb.sock", "re_dis"}, wantCode: 2, wantStderr: "drain: service name \"re_dis\": character"},
		{name: "drain without node", args: []string{"drain", "--socket", "/nonexistent/amb.sock", "redis"}, wantCode: 1, wantStderr: "is a node running"},
		{name: "announce without node", args: []string{"announce", "--socket", "/nonexistent/amb.sock", "redis:6379=12345"}, wantCode: 1, wantStderr: "is a node running"},
		{name: "drain empty socket", args: []string{"drain", "--socket", "", "redis"}, wantCode: 2, wantStderr: "--socket: empty path"},
		{name: "announce refused", args: []string{"announce", "--socket", refusing, "redis:6379=12345"}, wantCode: 1, wantStderr: "ambassador: node refused the request: only root may change this node's announcements, not uid 65534\n"},
		{name: "drain refused", args: []string{"drain", "--socket", refusing, "redis"}, wantCode: 1, wantStderr: "ambassador: node refused the request: only root"},
		{name: "services through socket", args: []string{"services", "--socket", refusing}, wantCode: 0, wantStdout: "SERVICE"},
		{name: "node socket too long", args: []string{"--socket", "/" + strings.Repeat("s", 120)}, wantCode: 2, wantStderr: "--socket: "},
		// Every flag that names a service applies the one rule (svcname).
		{name: "bad check name", args: []string{"--announce", "redis=6379", "--check", "re_dis=tcp"}, wantCode: 2, wantStderr: `--check "re_dis=tcp": service name "re_dis"`},
		{name: "bad credentials name", args: []string{"--credentials", "my db=redis:/tmp/x"}, wantCode: 2, wantStderr: `service name "my db"`},
		{name: "long credentials name", args: []string{"--credentials", "abcdefghijklmnop=redis:/tmp/x"}, wantCode: 2, wantStderr: "--credentials"},
		{name: "bad credentials proto", args: []string{"--credentials", "redis=mysql:/tmp/x"}, wantCode: 2, wantStderr: "--credentials"},
		{name: "missing credentials file", args: []string{"--no-mdns", "--http", "", "--credentials", "redis=redis:/nonexistent/cred"}, wantCode: 1, wantStderr: "/nonexistent/cred"},
		{name: "keygen", args: []string{"keygen"}, wantCode: 0, wantStdout: "="},
		{name: "bad key", args: []string{"--key", "c2hvcnQ="}, wantCode: 2, wantStderr: "--key: key 1:"},
		// An unset variable (--key-file "$KEYFILE") used to run the node
		// with no key at all: nothing encrypted. (--gossip-port 0 ends the
		// run with another error where the empty path is not caught.)
		{name: "key file empty path", args: []string{"--key-file", "", "--gossip-port", "0"}, wantCode: 2, wantStderr: "--key-file: empty path"},
		{name: "config empty path", args: []string{"--config", "", "--gossip-port", "0"}, wantCode: 2, wantStderr: "--config: empty path"},
		{name: "key file missing", args: []string{"--key-file", "/nonexistent/key"}, wantCode: 2, wantStderr: "--key-file"},
		{name: "tls ca alone", args: []string{"--tls-ca", "/nonexistent/ca.pem"}, wantCode: 2, wantStderr: "--tls-ca: given without tls-cert and tls-key"},
		{name: "tls key missing", args: []string{"--tls-ca", "/nonexistent/ca.pem", "--tls-cert", "/nonexistent/node.pem"}, wantCode: 2, wantStderr: "--tls-ca: given without tls-key"},
		{name: "tls cert alone", args: []string{"--tls-cert", "/nonexistent/node.pem"}, wantCode: 2, wantStderr: "--tls-cert: given without tls-ca and tls-key"},
		{name: "tls ca file missing", args: []string{"--no-mdns", "--http", "", "--key", "bGFiLWtleS1mb3ItYW1iYXNzYWRvci10ZXN0cy0zMmI=", "--tls-ca", "/nonexistent/ca.pem", "--tls-cert", "/nonexistent/node.pem", "--tls-key", "/nonexistent/node.key"}, wantCode: 1, wantStderr: "/nonexistent/ca.pem"},
		// An operator CA without a key would let a stranger join the gossip
		// and rewrite the catalog: a usage error naming both flags.
		{name: "tls ca without key", args: []string{"--no-mdns", "--http", "", "--tls-ca", "/nonexistent/ca.pem", "--tls-cert", "/nonexistent/node.pem", "--tls-key", "/nonexistent/node.key"}, wantCode: 2, wantStderr: "--tls-ca: needs --key"},
		{name: "members without node", args: []string{"members", "--http", "127.0.0.1:1"}, wantCode: 1, wantStderr: "is a node running"},
		// A bad --http of a reading command is bad usage, named; it used
		// to be exit 1, "mesh: status api address: ...".
		{name: "members bad http", args: []string{"members", "--http", "nonsense"}, wantCode: 2, wantStderr: `--http: port "nonsense"`},
		{name: "connections bad http port", args: []string{"connections", "--http", "127.0.0.1:99999"}, wantCode: 2, wantStderr: `--http: port "99999"`},
		{name: "watch bad http", args: []string{"watch", "--http", "nonsense"}, wantCode: 2, wantStderr: `--http: port "nonsense"`},
		{name: "watch empty http", args: []string{"watch", "--http", ""}, wantCode: 2, wantStderr: "--http: empty"},
		// Empty is the node's "off": the reading commands use the
		// control socket then.
		{name: "services empty http", args: []string{"services", "--http", "", "--socket", refusing}, wantCode: 0, wantStdout: "SERVICE"},
		// The usage line offers one or the other; both on the command
		// line used to read --http without a word about --socket.
		{name: "services socket and http", args: []string{"services", "--socket", refusing, "--http", "127.0.0.1:1"}, wantCode: 2, wantStderr: "--socket and --http are both given: give one"},
		// A node flag before a command is not the command's: it used to
		// be dropped without a word (the node ran in cluster "ambassador").
		{name: "node flag before run", args: []string{"--cluster", "a b", "run", "--gossip-port", "0"}, wantCode: 2, wantStderr: `--cluster is given before the command "run"`},
		{name: "node flag before a client command", args: []string{"--gossip-port", "0", "members", "--socket", "/nonexistent/amb.sock"}, wantCode: 2, wantStderr: `--gossip-port is given before the command "members"`},
		{name: "log flag before forward", args: []string{"--log-level", "debug", "forward"}, wantCode: 2, wantStderr: `--log-level is given before the command "forward"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"ambassador"}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("got exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.wantStderr)
			}
			if tc.wantCode == 2 && strings.Count(strings.TrimSpace(stderr.String()), "\n") > 0 {
				t.Errorf("usage error should be one line, got %q", stderr.String())
			}
		})
	}
}

// TestNodeEnvWithCommand: AMBASSADOR_* variables of the node's flags apply
// to every command and are no usage error, unlike the same flags on the
// command line before a command. AMBASSADOR_HTTP="" (the node's status
// address off) leaves a reading command on the control socket.
func TestNodeEnvWithCommand(t *testing.T) {
	// The variable of one, the flag of the other: the command line
	// picks, no usage error.
	t.Run("socket variable, http flag", func(t *testing.T) {
		t.Setenv("AMBASSADOR_SOCKET", "/nonexistent/amb.sock")
		var stdout, stderr bytes.Buffer
		if code := run([]string{"ambassador", "members", "--http", "127.0.0.1:1"}, &stdout, &stderr); code != exitFailure || !strings.Contains(stderr.String(), "127.0.0.1:1") {
			t.Fatalf("got exit %d, stderr %q; want exit 1 reading 127.0.0.1:1", code, stderr.String())
		}
	})
	t.Setenv("AMBASSADOR_CLUSTER", "lab")
	t.Setenv("AMBASSADOR_HTTP", "") // the node's status address off
	t.Setenv("AMBASSADOR_ANNOUNCE", "redis:6379=12345")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"ambassador", "services", "--socket", refusingNode(t)}, &stdout, &stderr); code != exitOK {
		t.Fatalf("got exit %d, want 0\nstderr: %s", code, stderr.String())
	}
}

// failingWriter is a stdout that cannot be written: a full disk.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// TestKeygenWriteFails: `ambassador keygen > FILE` on a full disk must not
// exit 0, or the key is lost while the user thinks it is in FILE.
func TestKeygenWriteFails(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"ambassador", "keygen"}, failingWriter{}, &stderr); code != exitFailure || !strings.Contains(stderr.String(), "no space left on device") {
		t.Fatalf("got exit %d, stderr %q; want exit 1 naming the write error", code, stderr.String())
	}
}

// TestOutputWriteFails: output that did not reach stdout (`ambassador
// --help > /dev/full`) is a failure, exit 1 with the write error on
// stderr, for help and version as for a command's own output. urfave/cli
// drops the help printer's write errors, so help used to exit 0.
func TestOutputWriteFails(t *testing.T) {
	for _, args := range [][]string{
		{"--help"},
		{"-h"},
		{"help"},
		{"help", "forward"},
		{"forward", "--help"},
		{"members", "-h"},
		{"--version"},
		{"version"},
		{"services", "--socket", refusingNode(t)},
		{"services", "--json", "--socket", refusingNode(t)},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(append([]string{"ambassador"}, args...), failingWriter{}, &stderr)
			if code != exitFailure || !strings.Contains(stderr.String(), "no space left on device") {
				t.Fatalf("got exit %d, stderr %q; want exit 1 naming the write error", code, stderr.String())
			}
			if n := strings.Count(stderr.String(), "no space left on device"); n != 1 {
				t.Errorf("stderr %q: the write error %d times, want once", stderr.String(), n)
			}
		})
	}
}

// TestEmptySocket: AMBASSADOR_SOCKET="" (or --socket "") is what the node
// reads as "no control socket". The reading commands then read the node's
// status address (the default one unless --http says otherwise), as an
// empty --http sends them to the control socket; with both empty there is
// nothing to read, and announce and drain, which need the socket, stop.
// Those are bad usage naming where the empty value came from.
func TestEmptySocket(t *testing.T) {
	// A fake node at the default status address, if it is free.
	ln, err := net.Listen("tcp", mesh.DefaultConfig().HTTP)
	if err != nil {
		t.Skipf("the default status address is busy: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"node":"n","members":[{"name":"from-the-status-address","addr":"127.0.0.1","port":7946,"state":"alive"}]}`))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	refusing := refusingNode(t)
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "variable empty: the status address", env: map[string]string{"AMBASSADOR_SOCKET": ""}, args: []string{"members"},
			wantCode: 0, wantStdout: "from-the-status-address"},
		{name: "flag empty: the status address", args: []string{"members", "--socket", ""}, wantCode: 0, wantStdout: "from-the-status-address"},
		{name: "both variables empty", env: map[string]string{"AMBASSADOR_SOCKET": "", "AMBASSADOR_HTTP": ""}, args: []string{"services"},
			wantCode: 2, wantStderr: "AMBASSADOR_SOCKET and AMBASSADOR_HTTP are both empty"},
		{name: "both flags empty", args: []string{"connections", "--socket", "", "--http", ""},
			wantCode: 2, wantStderr: "--socket and --http are both empty"},
		{name: "flag over empty variable", env: map[string]string{"AMBASSADOR_SOCKET": ""}, args: []string{"services", "--socket", refusing},
			wantCode: 0, wantStdout: "SERVICE"},
		{name: "announce with the variable empty", env: map[string]string{"AMBASSADOR_SOCKET": ""}, args: []string{"announce", "redis:6379=12345"},
			wantCode: 2, wantStderr: "AMBASSADOR_SOCKET: empty path: announce needs the node's control socket"},
		{name: "drain with the flag empty", args: []string{"drain", "--socket", "", "redis"},
			wantCode: 2, wantStderr: "--socket: empty path: drain needs the node's control socket"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"ambassador"}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stdout.String(), tc.wantStdout) || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Fatalf("got exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, stdout.String(), stderr.String(), tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}
}

// TestErrorNamesTheVariable: a bad value that came from an AMBASSADOR_*
// variable is named by the variable, not by a flag the user never typed;
// from the command line, by the flag.
func TestErrorNamesTheVariable(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantStderr string
	}{
		{name: "watch empty variable", env: map[string]string{"AMBASSADOR_HTTP": ""}, args: []string{"watch"},
			wantStderr: "AMBASSADOR_HTTP: empty: give the node's status address"},
		{name: "watch bad variable", env: map[string]string{"AMBASSADOR_HTTP": "nonsense"}, args: []string{"watch"},
			wantStderr: `AMBASSADOR_HTTP: port "nonsense"`},
		{name: "members bad variable", env: map[string]string{"AMBASSADOR_HTTP": "nonsense"}, args: []string{"members"},
			wantStderr: `AMBASSADOR_HTTP: port "nonsense"`},
		{name: "watch flag over variable", env: map[string]string{"AMBASSADOR_HTTP": "127.0.0.1:1"}, args: []string{"watch", "--http", "nonsense"},
			wantStderr: `--http: port "nonsense"`},
		{name: "config empty variable", env: map[string]string{"AMBASSADOR_CONFIG": ""}, args: []string{"--gossip-port", "0"},
			wantStderr: "AMBASSADOR_CONFIG: empty path"},
		{name: "config empty flag", args: []string{"--config", "", "--gossip-port", "0"},
			wantStderr: "--config: empty path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"ambassador"}, tc.args...), &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Fatalf("got exit %d, stderr %q; want exit 2, stderr with %q", code, stderr.String(), tc.wantStderr)
			}
		})
	}
}

// TestBadVariableOnlyWhereUsed: an AMBASSADOR_* variable that does not
// parse (a typo in an env file) is bad usage for the commands that read
// it, the node for its flags; it used to stop every command, --help and
// version included, because the node's flags are the app's.
func TestBadVariableOnlyWhereUsed(t *testing.T) {
	refusing := refusingNode(t)
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "help", env: map[string]string{"AMBASSADOR_GOSSIP_PORT": "abc"}, args: []string{"--help"}, wantCode: 0, wantStdout: "reach services"},
		{name: "version", env: map[string]string{"AMBASSADOR_DRAIN_TIMEOUT": "abc"}, args: []string{"version"}, wantCode: 0, wantStdout: "ambassador"},
		{name: "keygen", env: map[string]string{"AMBASSADOR_NO_MDNS": "yes"}, args: []string{"keygen"}, wantCode: 0, wantStdout: "="},
		{name: "services", env: map[string]string{"AMBASSADOR_GOSSIP_PORT": "abc"}, args: []string{"services", "--socket", refusing}, wantCode: 0, wantStdout: "SERVICE"},
		{name: "node", env: map[string]string{"AMBASSADOR_GOSSIP_PORT": "abc"}, args: nil, wantCode: 2, wantStderr: `could not parse "abc" as int value from environment variable "AMBASSADOR_GOSSIP_PORT"`},
		{name: "run", env: map[string]string{"AMBASSADOR_NO_MDNS": "yes"}, args: []string{"run"}, wantCode: 2, wantStderr: `"AMBASSADOR_NO_MDNS"`},
		{name: "command that reads it", env: map[string]string{"AMBASSADOR_JSON": "maybe"}, args: []string{"services", "--socket", refusing}, wantCode: 2, wantStderr: `"AMBASSADOR_JSON"`},
		{name: "forward", env: map[string]string{"AMBASSADOR_DRAIN_TIMEOUT": "abc"}, args: []string{"forward", "6380=10.0.0.5:6379"}, wantCode: 2, wantStderr: `"AMBASSADOR_DRAIN_TIMEOUT"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"ambassador"}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stdout.String(), tc.wantStdout) || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Fatalf("got exit %d, stdout %.80q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, stdout.String(), stderr.String(), tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}
}
