// Package lab builds real hosts for multi-host tests: Linux network
// namespaces joined by veth pairs to a bridge that lives in a namespace of
// its own. Each host can run the ambassador binary and Debian's servers.
// Everything a lab creates is torn down in t.Cleanup, also when the test
// fails. Only _test.go files import this package.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// Subnet is the private /24 the lab hosts live in. It exists only inside the
// lab's namespaces, never on the machine's own interfaces.
const Subnet = "10.199.77"

// Lab is one bridge and its hosts.
type Lab struct {
	t     testing.TB
	id    string
	br    string // bridge namespace
	dir   string
	mu    sync.Mutex
	hosts []*Host
	procs []*Proc
}

// Host is one network namespace with a veth "eth0" on the lab bridge.
type Host struct {
	lab  *Lab
	Name string // short name given to AddHost
	NS   string // network namespace name
	Addr string // IPv4 address on the bridge
	Dir  string // scratch folder for this host's files
}

// Skip reasons are one line each, so a non-root run says plainly why the
// lab did not run.
func skipUnlessCapable(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("netns lab skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("netns lab needs root (CAP_NET_ADMIN); run: sudo -E go test -run Lab .")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns lab needs the ip command (Debian package iproute2)")
	}
}

// Need skips the test when one of the commands is missing, with a one-line
// reason; under CI (CI set in the environment, as .ci/run runs) it fails
// instead, because there .ci/run installs everything and a skip would hide
// a missing install step.
func Need(t testing.TB, hint string, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("lab needs %s (%s), and under CI .ci/run should have installed it", b, hint)
			}
			t.Skipf("lab needs %s (%s)", b, hint)
		}
	}
}

// New makes an empty lab (just the bridge) or skips the test when the
// process cannot make namespaces.
func New(t testing.TB) *Lab {
	t.Helper()
	skipUnlessCapable(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &Lab{t: t, id: hex.EncodeToString(b), dir: t.TempDir()}
	l.br = "amb" + l.id + "br"
	t.Cleanup(l.teardown)
	l.must("ip", "netns", "add", l.br)
	l.must("ip", "-n", l.br, "link", "set", "lo", "up")
	l.must("ip", "-n", l.br, "link", "add", "br0", "type", "bridge")
	// Multicast snooping would hold back mDNS until the bridge has seen an
	// IGMP report; a lab bridge should flood like a dumb switch.
	l.must("ip", "-n", l.br, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	l.must("ip", "-n", l.br, "link", "set", "br0", "up")
	return l
}

// AddHost creates a host namespace with address Subnet.(n+1) on eth0, the
// loopback up, and the multicast route mDNS needs.
func (l *Lab) AddHost(name string) *Host {
	l.t.Helper()
	l.mu.Lock()
	idx := len(l.hosts) + 1
	h := &Host{lab: l, Name: name, NS: fmt.Sprintf("amb%s%d", l.id, idx), Addr: fmt.Sprintf("%s.%d", Subnet, idx+1)}
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	if idx == bigLab {
		raiseNeighbourLimits(l.t)
	}
	h.Dir = filepath.Join(l.dir, name)
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		l.t.Fatalf("lab: mkdir %s: %v", h.Dir, err)
	}
	veth := fmt.Sprintf("v%d", idx)
	l.must("ip", "netns", "add", h.NS)
	l.must("ip", "-n", l.br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	l.must("ip", "-n", l.br, "link", "set", veth, "master", "br0", "up")
	l.must("ip", "-n", h.NS, "link", "set", "lo", "up")
	l.must("ip", "-n", h.NS, "addr", "add", h.Addr+"/24", "dev", "eth0")
	l.must("ip", "-n", h.NS, "link", "set", "eth0", "up")
	l.must("ip", "-n", h.NS, "route", "add", "224.0.0.0/4", "dev", "eth0")
	return h
}

// bigLab is the host count from which the hosts' neighbour (ARP) entries,
// about N^2 for all namespaces together (the kernel has one table for
// all of them), pass the kernel's default gc_thresh1 (defaultGCThresh1):
// 12 hosts hold 132. See neighbourLimits.
const bigLab = 12

// defaultGCThresh1 is the kernel's default net.ipv4.neigh.default.gc_thresh1.
const defaultGCThresh1 = 128

// maxLabHosts is the most hosts a lab can have: Subnet is a /24 and hosts
// take .2 to .254.
const maxLabHosts = 253

// neighbourLimits are the gc_thresh1/2/3 a big lab needs: the table must
// neither overflow (gc_thresh3, 1024 by default: past about 32 hosts new
// entries fail and packets are lost, LAB.md) nor be garbage-collected
// (gc_thresh1), as a real host's own table is not: a host with 100 peers
// holds 100 entries, under the default gc_thresh1 of 128, below which the
// kernel never collects. Above gc_thresh1 the periodic collection drops
// every entry unused for gc_stale_time (60 s), while a node probes each
// peer only about once per N seconds; so in a 100-host lab with
// gc_thresh1 4096 (9,900 entries) about half of all probes needed a fresh
// ARP resolution: a broadcast the bridge floods to every namespace, all
// processed in the sending node's system call (veth delivers in the
// sender's softirq, which this kernel charges to the sender's CPU time).
// Measured in the idle window (issue 10, docs/scale.md session 11): 53 new
// entries a second, idle CPU median 0.18 % and max 0.22 %; with
// gc_thresh1 16384, 2.3 a second and 0.15 % / 0.18 %. gc_thresh1 covers
// maxLabHosts.
var neighbourLimits = []int{65536, 131072, 262144}

// raiseNeighbourLimits raises net.ipv4.neigh.default.gc_thresh1..3 to
// neighbourLimits where they are lower. The table is the machine's, shared
// by every namespace, so the limits are left raised: lowering them again
// could break another lab running at the same time, and higher limits only
// cost memory for entries that exist.
func raiseNeighbourLimits(t testing.TB) {
	t.Helper()
	for i, want := range neighbourLimits {
		path := fmt.Sprintf("/proc/sys/net/ipv4/neigh/default/gc_thresh%d", i+1)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("lab: read %s: %v", path, err)
		}
		if cur, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && cur >= want {
			continue
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
			t.Fatalf("lab: raise %s to %d: %v", path, want, err)
		}
	}
}

// BridgeNS is the namespace of the lab's bridge br0, where a capture sees
// every packet between hosts.
func (l *Lab) BridgeNS() string { return l.br }

// Hosts returns the hosts in the order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

func (l *Lab) must(args ...string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("lab: %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

func (l *Lab) teardown() {
	l.mu.Lock()
	procs := append([]*Proc(nil), l.procs...)
	hosts := append([]*Host(nil), l.hosts...)
	l.mu.Unlock()
	// Judge the checked processes before stopping anything: one that has
	// already ended, unasked, crashed.
	for _, p := range procs {
		if p.checked && p.Exited() && !p.expectedEnd() {
			l.t.Errorf("lab: %s on %s ended on its own before the end of the test (%s); a node must run until it is stopped", p.name, p.host.Name, p.exitText())
		}
	}
	// SIGTERM to all at once, then one shared deadline: a node that leaves
	// gracefully takes seconds, and one after another would add up.
	// A process the test already sent SIGTERM may still be leaving: a
	// second SIGTERM would kill it on the spot (a node exits at once on the
	// second signal), so it only gets the shared deadline.
	for _, p := range procs {
		if !p.Exited() && !p.termSent.Swap(true) {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(stopGrace)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
		}
	}
	for _, p := range procs {
		if !p.Exited() {
			if p.checked {
				l.t.Errorf("lab: %s on %s did not exit within %s of SIGTERM; killed", p.name, p.host.Name, stopGrace)
			}
			_ = p.cmd.Process.Kill()
			<-p.done
			continue
		}
		if p.checked && p.termSent.Load() && !p.observed.Load() {
			if code, ok := p.exitCode(); !ok || code != 0 {
				l.t.Errorf("lab: %s on %s exited with %s after SIGTERM, want status 0", p.name, p.host.Name, p.exitText())
			}
		}
	}
	if l.t.Failed() {
		for _, p := range procs {
			l.t.Logf("--- log of %s on %s (last 40 lines):\n%s", p.name, p.host.Name, tail(p.Log(), 40))
		}
	}
	for _, h := range hosts {
		_ = exec.Command("ip", "netns", "del", h.NS).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.br).Run()
}

// stopGrace is how long teardown waits for every process to exit after
// SIGTERM: a node's graceful leave (up to 5 s) plus its drain.
const stopGrace = 15 * time.Second

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Run runs a command in the host's namespace and returns its combined
// output; it gives up after timeout.
func (h *Host) Run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: %s on %s: %w", strings.Join(args, " "), h.Name, err)
	}
	return string(out), nil
}

// Exec runs a command in the host's namespace and returns an *exec.Cmd
// for callers that need its pipes. The caller runs and waits for it.
func (h *Host) Exec(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...)
	cmd.WaitDelay = time.Second
	return cmd
}

// Proc is a process running in a host until the lab ends or it is stopped.
type Proc struct {
	host *Host
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set before done is closed

	checked  bool        // teardown checks how it ended (CheckExit)
	killed   atomic.Bool // the test sent SIGKILL: its end is the test's business
	observed atomic.Bool // the test saw it end through Wait and judged the status itself
	termSent atomic.Bool // teardown (or the test) sent SIGTERM
}

// CheckExit makes teardown fail the test when p ends on its own before the
// test is over (a crash), or exits with a status other than 0 on SIGTERM,
// or does not exit in time. A process the test kills with SIGKILL
// (Signal), or whose end it waits for (Wait), is the test's to judge.
// Call it right after Start, from the test goroutine.
func (p *Proc) CheckExit() *Proc {
	p.checked = true
	return p
}

// expectedEnd reports whether the test itself ended p (SIGKILL, or
// SIGTERM, whose exit status teardown still checks) or judged its end.
func (p *Proc) expectedEnd() bool {
	return p.killed.Load() || p.termSent.Load() || p.observed.Load()
}

// exitCode is p's exit status once it has ended; ok is false when a
// signal ended it or it could not be waited for.
func (p *Proc) exitCode() (code int, ok bool) {
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0, true
	case errors.As(p.err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode(), true
	}
	return -1, false
}

// exitText says how p ended, for a failure message.
func (p *Proc) exitText() string {
	if code, ok := p.exitCode(); ok {
		return fmt.Sprintf("exit status %d", code)
	}
	return p.err.Error()
}

// Start runs a long-lived process in the host; its output goes to a log file.
// `ip netns exec` execs the command itself, so the pid is the process's own.
func (h *Host) Start(name string, args ...string) *Proc {
	h.lab.t.Helper()
	return h.startWith(name, nil, args...)
}

// startWith is Start with extra open files for the process (its fd 3
// on), which it runs in a process group of its own.
func (h *Host) startWith(name string, files []*os.File, args ...string) *Proc {
	l := h.lab
	l.t.Helper()
	p := &Proc{host: h, name: name, log: filepath.Join(h.Dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = dieWithParent()
	if files != nil {
		p.cmd.ExtraFiles = files
		setpgid(p.cmd.SysProcAttr)
	}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		l.t.Fatalf("lab: start %s on %s: %v", name, h.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// Log returns what the process has written so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process. After SIGKILL teardown does not judge
// how it ended; after SIGTERM it expects status 0 (see CheckExit).
func (p *Proc) Signal(sig os.Signal) error {
	switch sig {
	case syscall.SIGKILL:
		p.killed.Store(true)
	case syscall.SIGTERM:
		p.termSent.Store(true)
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 when killed by a signal).
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return 0, fmt.Errorf("lab: %s on %s still running after %s", p.name, p.host.Name, timeout)
	}
	p.observed.Store(true)
	var ee *exec.ExitError
	if p.err == nil {
		return 0, nil
	} else if errors.As(p.err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, p.err
}

// WaitUntil polls cond until it holds, and fails the test with the
// process's log if the process ends first or timeout passes.
func (p *Proc) WaitUntil(timeout time.Duration, what string, cond func() bool) {
	t := p.host.lab.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p.Exited() {
			t.Fatalf("lab: %s on %s ended (%s) before %s:\n%s", p.name, p.host.Name, p.exitText(), what, tail(p.Log(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab: timed out after %s waiting for %s of %s on %s:\n%s", timeout, what, p.name, p.host.Name, tail(p.Log(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process: SIGTERM, then SIGKILL after five seconds.
func (p *Proc) stop() {
	if p.Exited() {
		return
	}
	p.termSent.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// WaitFor polls cond until it returns true or timeout passes.
var WaitFor = testutil.WaitFor
