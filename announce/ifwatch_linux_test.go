//go:build linux

package announce

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestIfaceWatch: the watch reports a link coming up and an address being
// added, and nothing while nothing changes. It runs in a network namespace
// of its own (root only), made on a locked thread: the watch's socket and
// the ip commands, forked from that thread, live there.
func TestIfaceWatch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	type result struct {
		w   *ifaceWatch
		err error
	}
	steps := make(chan []string)
	done := make(chan error)
	made := make(chan result)
	go func() {
		// The thread ends with the goroutine (still locked), taking the
		// namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			made <- result{err: err}
			return
		}
		w, err := newIfaceWatch()
		made <- result{w, err}
		for args := range steps {
			out, err := exec.Command("ip", args...).CombinedOutput()
			if err != nil {
				t.Logf("ip %v: %s", args, out)
			}
			done <- err
		}
	}()
	r := <-made
	if r.err != nil {
		t.Skipf("no private network namespace or watch: %v", r.err)
	}
	defer close(steps)
	w := r.w
	go w.run()
	defer w.close()

	expect := func(what string, want bool) {
		t.Helper()
		wait := 2 * time.Second
		if !want {
			wait = 200 * time.Millisecond
		}
		select {
		case <-w.changes():
			if !want {
				t.Errorf("%s: a change reported", what)
			}
		case <-time.After(wait):
			if want {
				t.Errorf("%s: no change reported within %s", what, wait)
			}
		}
	}
	expect("nothing done", false)
	for _, step := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", "10.77.0.1/32", "dev", "lo"}} {
		steps <- step
		if err := <-done; err != nil {
			t.Fatalf("ip %v: %v", step, err)
		}
		expect("ip "+step[0]+" "+step[1], true)
		// Drain what else that step reported (several messages, which
		// may arrive after the first was taken).
	drain:
		for {
			select {
			case <-w.changes():
			case <-time.After(100 * time.Millisecond):
				break drain
			}
		}
	}
	expect("nothing more done", false)
}
