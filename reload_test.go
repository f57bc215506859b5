package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/testutil"
	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/urfave/cli/v2"
)

var freePort = testutil.FreePort

// TestSIGHUPReload runs the binary with a --config file, changes the file's
// announcements and its key file, sends SIGHUP and checks that the node
// follows (services replaced, keys rotated) without a restart, and that a
// service drained at run time stays drained through a SIGHUP for an
// unrelated edit; then SIGTERM ends it with status 0.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ambassador.conf")
	keyFile := filepath.Join(dir, "keys")
	sock := filepath.Join(dir, "ambassador.sock")
	const oldKey, newKey = "bGFiLWtleS1mb3ItYW1iYXNzYWRvci10ZXN0cy0zMmI=", "nurHepAYiImKWoiiOzd/bTsZSGMPc67c9aK7Y1dgITc="
	if err := os.WriteFile(keyFile, []byte(oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The services need a live target: a failing health check would keep
	// them out of the catalog.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	tp := strconv.Itoa(target.Addr().(*net.TCPAddr).Port)

	var (
		base, httpAddr string
		cmd            *exec.Cmd
		logs           *testutil.Buffer
		exited         chan error
	)
	write := func(extra string) {
		if err := os.WriteFile(conf, []byte(base+extra), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The ports come from freePort, free a moment before the node binds
	// them; another process may take one in between. Such a start is
	// retried with fresh ports; any other failure to start fails the test
	// with the node's output.
	for attempt := 1; ; attempt++ {
		httpAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
		base = "no-mdns = true\nbind = 127.0.0.1\nprofile = local\nhttp = " + httpAddr +
			"\ngossip-port = " + strconv.Itoa(freePort(t)) + "\ndata-port = " + strconv.Itoa(freePort(t)) +
			"\nkey-file = " + keyFile + "\nsocket = " + sock + "\n"
		write("announce = one:" + strconv.Itoa(freePort(t)) + "=" + tp + "\n")
		var err error
		cmd, logs, exited, err = startLocalNode(conf, httpAddr)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("start %s --config %s: %v", binary, conf, err)
		}
		t.Logf("attempt %d: %v; again with other ports", attempt, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("ambassador's output:\n%s", logs.String())
		}
	})

	names := func() []string {
		var s mesh.Services
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := mesh.Fetch(ctx, httpAddr, "/v1/services", &s); err != nil {
			return nil
		}
		var out []string
		for _, v := range s.Services {
			out = append(out, v.Name)
		}
		return out
	}
	testutil.WaitFor(t, 20*time.Second, "service one", func() bool { n := names(); return len(n) == 1 && n[0] == "one" })

	two, three := "announce = two:"+strconv.Itoa(freePort(t))+"="+tp+"\n", "announce = three:"+strconv.Itoa(freePort(t))+"="+tp+"\n"
	write(two + three)
	// The same SIGHUP re-reads the key file: the new key, first, rotates in.
	if err := os.WriteFile(keyFile, []byte(newKey+"\n"+oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "services three and two after SIGHUP", func() bool {
		n := names()
		return len(n) == 2 && n[0] == "three" && n[1] == "two"
	})
	testutil.WaitFor(t, 10*time.Second, "the key rotation to be logged", func() bool {
		return strings.Contains(logs.String(), `"cluster keys replaced"`) && strings.Contains(logs.String(), "keys=2")
	})

	// A service drained at run time (a migration) stays drained when a
	// SIGHUP comes for an unrelated edit of the file.
	var drained map[string]string
	if err := mesh.CallSocket(t.Context(), sock, "DELETE", "/v1/announce/two", nil, &drained); err != nil {
		t.Fatal(err)
	}
	write(two + three + "announce = four:" + strconv.Itoa(freePort(t)) + "=" + tp + "\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "services four and three (two still drained) after SIGHUP", func() bool {
		n := names()
		return len(n) == 2 && n[0] == "four" && n[1] == "three"
	})
	// Were two back, it could show up a moment after four: look again for
	// a while.
	for range 10 {
		if n := names(); len(n) != 2 || n[0] != "four" || n[1] != "three" {
			t.Fatalf("after the SIGHUP: services %q, want four and three only", n)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A broken file on reload keeps the running settings.
	if err := os.WriteFile(conf, []byte("nonsense\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the failed reload to be logged", func() bool { return strings.Contains(logs.String(), "reload failed") })
	if n := names(); len(n) != 2 {
		t.Fatalf("after a failed reload: services %q, want the two running ones", n)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit status 0\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not exit after SIGTERM")
	}
}

// startLocalNode runs the binary with --config conf and waits until its status
// API at httpAddr answers. When the node exits first, or does not answer
// within 20 s, it returns an error that holds the node's output.
func startLocalNode(conf, httpAddr string) (*exec.Cmd, *testutil.Buffer, chan error, error) {
	cmd := exec.Command(binary, "--config", conf)
	logs := new(testutil.Buffer)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := mesh.Fetch(ctx, httpAddr, "/v1/health", new(map[string]string))
		cancel()
		if err == nil {
			return cmd, logs, exited, nil
		}
		select {
		case werr := <-exited:
			return nil, nil, nil, fmt.Errorf("node exited before its status API answered (%v):\n%s", werr, logs.String())
		case <-deadline:
			_ = cmd.Process.Kill()
			<-exited
			return nil, nil, nil, fmt.Errorf("status API at %s did not answer within 20 s (last: %v):\n%s", httpAddr, err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fakeReloader stands for the node in TestReloadLogsWhatStays.
type fakeReloader struct {
	calls int
	err   error
}

func (f *fakeReloader) Reload(mesh.Config) error { f.calls++; return f.err }

// TestReloadLogsWhatStays: every reload that does not apply in full says
// what stays as it was. A file the node would refuse (a bad line, a
// credentials file it cannot read) is not applied at all, and the log
// says the running settings stay; a reload the node applies in part (a
// setting that takes a restart) says that what the error names keeps its
// running value. A missing credentials file used to reach the node, which
// refused the whole reload, and was logged as "reload" with the error
// alone.
func TestReloadLogsWhatStays(t *testing.T) {
	restart := errors.New("mesh: reload: http changed; that takes a restart, the old value stays")
	tests := []struct {
		name      string
		file      string
		nodeErr   error
		wantCalls int
		wantLog   []string
	}{
		{name: "applied", file: "announce = redis:6379=12345\n", wantCalls: 1},
		{name: "bad line", file: "nonsense\n", wantCalls: 0,
			wantLog: []string{"level=ERROR", "reload failed, keeping the running settings", "want key = value"}},
		{name: "credentials file missing", file: "credentials = redis=redis:/nonexistent/cred\n", wantCalls: 0,
			wantLog: []string{"level=ERROR", "reload failed, keeping the running settings", "/nonexistent/cred"}},
		{name: "applied in part", file: "announce = redis:6379=12345\n", nodeErr: restart, wantCalls: 1,
			wantLog: []string{"level=WARN", "what the error names keeps its running value", "http changed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ambassador.conf")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			node := &fakeReloader{err: tc.nodeErr}
			app := newApp(io.Discard, io.Discard)
			app.Action = func(c *cli.Context) error {
				reload(c, node, slog.New(slog.NewTextHandler(&logs, nil)))
				return nil
			}
			if err := app.Run([]string{"ambassador", "--config", path, "--socket", ""}); err != nil {
				t.Fatal(err)
			}
			if node.calls != tc.wantCalls {
				t.Errorf("node.Reload called %d times, want %d", node.calls, tc.wantCalls)
			}
			for _, want := range tc.wantLog {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log %q does not contain %q", logs.String(), want)
				}
			}
			if len(tc.wantLog) == 0 && logs.Len() > 0 {
				t.Errorf("log %q, want nothing", logs.String())
			}
		})
	}
}
