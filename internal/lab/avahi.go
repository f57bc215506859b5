package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Avahi is an avahi-daemon with its own D-Bus system bus, running in a
// host's network namespace and in a private mount namespace so that its /run
// does not clash with the machine's (see shared/LAB.md).
type Avahi struct {
	host   *Host
	holder *Proc
	dir    string
}

// StartAvahi starts dbus-daemon and avahi-daemon in the host, restricted to
// eth0 and IPv4, and waits until avahi reports that it is up. It skips the
// test when the Debian packages are missing.
func (h *Host) StartAvahi() *Avahi {
	l := h.lab
	l.t.Helper()
	Need(l.t, "Debian packages avahi-daemon avahi-utils dbus util-linux", "avahi-daemon", "avahi-browse", "dbus-daemon", "unshare", "nsenter")
	dir := filepath.Join(h.Dir, "avahi")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	conf := "[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=eth0\nenable-dbus=yes\nratelimit-interval-usec=0\n" +
		"[wide-area]\nenable-wide-area=no\n[publish]\npublish-workstation=no\npublish-aaaa-on-ipv4=no\npublish-hinfo=no\n" +
		"[reflector]\n[rlimits]\n"
	if err := os.WriteFile(filepath.Join(dir, "avahi.conf"), []byte(conf), 0o644); err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	script := fmt.Sprintf(`set -e
mount -n -t tmpfs -o mode=755 lab-run /run
mkdir -p /run/dbus /run/avahi-daemon
dbus-daemon --system --fork --print-pid=3 3>%[1]s/dbus.pid
avahi-daemon --no-chroot --no-drop-root --no-rlimits -f %[1]s/avahi.conf >%[1]s/avahi.log 2>&1 &
echo $! >%[1]s/avahi.pid
exec sleep infinity`, dir)
	a := &Avahi{host: h, dir: dir}
	a.holder = h.Start("avahi-holder", "unshare", "-m", "--propagation", "private", "sh", "-c", script)
	l.t.Cleanup(a.stop) // runs before the lab's teardown: cleanups are LIFO
	WaitFor(l.t, 15*time.Second, "avahi-daemon startup on "+h.Name, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "avahi.log"))
		return strings.Contains(string(b), "Server startup complete")
	})
	return a
}

// Browse runs avahi-browse with args (for example "-rtp", "_redis._tcp")
// inside the host and returns its output.
func (a *Avahi) Browse(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(a.holder.Pid()), "-m", "-n", "avahi-browse"}, args...)...)
	cmd.WaitDelay = time.Second
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return string(out), fmt.Errorf("lab: avahi-browse timed out")
	}
	return string(out), err
}

func (a *Avahi) stop() {
	for _, f := range []string{"avahi.pid", "dbus.pid"} {
		b, err := os.ReadFile(filepath.Join(a.dir, f))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	}
	a.holder.stop()
}
