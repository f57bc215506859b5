package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on
// contrib/ambassador.service, with ExecStart pointed at the binary the
// tests built (verify checks that it exists). verify exits 0 even for an
// unknown key or a bad value, so any output fails the test; a broken copy
// shows that such output is caught.
func TestSystemdUnitVerifies(t *testing.T) {
	lab.Need(t, "Debian package systemd", "systemd-analyze")
	unit, err := os.ReadFile("contrib/ambassador.service")
	if err != nil {
		t.Fatal(err)
	}
	const exec0 = "ExecStart=/usr/local/bin/ambassador "
	if !strings.Contains(string(unit), "\n"+exec0) {
		t.Fatalf("unit has no %q line", exec0)
	}
	verify := func(content string) string {
		// The unit's name must end in .service; the folder is ours.
		p := filepath.Join(t.TempDir(), "ambassador.service")
		if err := os.WriteFile(p, []byte(strings.Replace(content, exec0, "ExecStart="+binary+" ", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
		if err != nil {
			return "exit: " + err.Error() + ": " + string(out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := verify(string(unit)); out != "" {
		t.Fatalf("systemd-analyze verify contrib/ambassador.service:\n%s", out)
	}
	for _, must := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "RuntimeDirectory=ambassador"} {
		if !strings.Contains(string(unit), "\n"+must+"\n") {
			t.Errorf("unit lacks %q", must)
		}
	}
	if out := verify(strings.Replace(string(unit), "ProtectSystem=strict", "ProtectSystm=strict", 1)); out == "" {
		t.Fatal("a misspelt key passed verify: the check above would not catch one")
	}
}

// TestSystemdNotify runs the node as systemd would, with $NOTIFY_SOCKET:
// READY=1 arrives once it runs, STOPPING=1 on SIGTERM, and it exits 0.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recv := func(timeout time.Duration) string {
		_ = l.SetReadDeadline(time.Now().Add(timeout))
		b := make([]byte, 4096)
		n, err := l.Read(b)
		if err != nil {
			t.Fatalf("no notification within %s: %v", timeout, err)
		}
		return string(b[:n])
	}
	// No control socket: as root the default is the system's one, which a
	// node already running on this host (or another test) may hold.
	cmd := exec.Command(binary, "--no-mdns", "--bind", "127.0.0.1", "--profile", "local", "--http", "", "--socket", "",
		"--gossip-port", strconv.Itoa(testutil.FreePort(t)), "--data-port", strconv.Itoa(testutil.FreePort(t)), "--drain-timeout", "1s")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	var logs testutil.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("ambassador's output:\n%s", logs.String())
		}
	}()
	if got := recv(20 * time.Second); !strings.HasPrefix(got, "READY=1\n") || !strings.Contains(got, "STATUS=node ") {
		t.Fatalf("first notification %q, want READY=1 and a STATUS", got)
	}
	// The log line is written before READY=1 is sent, but reaches logs
	// through a pipe and a copying goroutine: wait for it.
	testutil.WaitFor(t, 5*time.Second, "the node started line", func() bool { return strings.Contains(logs.String(), "node started") })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := recv(10 * time.Second); got != "STOPPING=1" {
		t.Fatalf("after SIGTERM: %q, want STOPPING=1", got)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after SIGTERM")
	}
}
