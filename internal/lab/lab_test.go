package lab

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is a testing.TB whose errors and cleanups are kept, so a test
// can run a lab's teardown and look at what it reported.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs) > 0 || r.TB.Failed()
}

// TestTeardownJudgesExit: teardown fails the test for a checked process
// that crashed or exited non-zero on SIGTERM (its own or the test's), and
// not for one that exited 0 (also on the test's SIGTERM), one the test
// killed or waited for, or an unchecked one.
func TestTeardownJudgesExit(t *testing.T) {
	const (
		crash     = "echo ready; exit 3"
		termFails = `trap "exit 1" TERM; echo ready; while :; do sleep 0.05; done`
		termClean = `trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done`
	)
	tests := []struct {
		name    string
		script  string
		check   bool
		act     func(t *testing.T, p *Proc)
		wantErr string // "" = teardown reports nothing
	}{
		{"crashed", crash, true, waitExited, "ended on its own before the end of the test (exit status 3)"},
		{"non-zero on SIGTERM", termFails, true, nil, "exited with exit status 1 after SIGTERM, want status 0"},
		{"clean on SIGTERM", termClean, true, nil, ""},
		{"killed by the test", termClean, true, func(t *testing.T, p *Proc) {
			if err := p.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitExited(t, p)
		}, ""},
		{"waited for by the test", crash, true, func(t *testing.T, p *Proc) {
			if code, err := p.Wait(10 * time.Second); err != nil || code != 3 {
				t.Fatalf("wait: %d, %v", code, err)
			}
		}, ""},
		{"stopped by the test with SIGTERM, exits 0", termClean, true, sigterm, ""},
		{"stopped by the test with SIGTERM, exits 1", termFails, true, sigterm, "exited with exit status 1 after SIGTERM, want status 0"},
		{"unchecked crash", crash, false, waitExited, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			l := New(rec)
			h := l.AddHost("h")
			p := h.Start("proc", "sh", "-c", tc.script)
			if tc.check {
				p.CheckExit()
			}
			WaitFor(t, 10*time.Second, "the script to start", func() bool { return strings.Contains(p.Log(), "ready") })
			if tc.act != nil {
				tc.act(t, p)
			}
			for i := len(rec.cleanups) - 1; i >= 0; i-- {
				rec.cleanups[i]()
			}
			got := strings.Join(rec.errs, "\n")
			if tc.wantErr == "" && got != "" || !strings.Contains(got, tc.wantErr) {
				t.Fatalf("teardown reported %q, want %q", got, tc.wantErr)
			}
		})
	}
}

// sigterm stops p the way a test does that does not call Wait.
func sigterm(t *testing.T, p *Proc) {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExited(t, p)
}

func waitExited(t *testing.T, p *Proc) {
	WaitFor(t, 10*time.Second, "the process to end", p.Exited)
}

// TestNeighbourLimits: the neighbour table a lab raises to is never
// garbage-collected, however many hosts the lab has, and it is raised from
// the first host count the default limit would collect at.
func TestNeighbourLimits(t *testing.T) {
	if n := maxLabHosts * (maxLabHosts - 1); neighbourLimits[0] <= n {
		t.Errorf("gc_thresh1 %d: a lab of %d hosts holds %d entries, and the kernel collects above gc_thresh1", neighbourLimits[0], maxLabHosts, n)
	}
	if !slices.IsSorted(neighbourLimits) {
		t.Errorf("gc_thresh1..3 %v not in order", neighbourLimits)
	}
	if bigLab*(bigLab-1) <= defaultGCThresh1 || (bigLab-1)*(bigLab-2) > defaultGCThresh1 {
		t.Errorf("bigLab %d: want the least N with N(N-1) > %d", bigLab, defaultGCThresh1)
	}
}
