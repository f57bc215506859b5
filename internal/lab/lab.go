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

// bigLab is the host count past which hosts that all talk to each other
// overflow the kernel's default neighbour (ARP) table: gc_thresh3 is 1024
// entries for all namespaces together, and N hosts need about N^2.
const bigLab = 31

// neighbourLimits are the gc_thresh1/2/3 a big lab needs (LAB.md).
var neighbourLimits = []int{4096, 16384, 32768}

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
	for _, p := range procs {
		p.stop()
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
}

// Start runs a long-lived process in the host; its output goes to a log file.
// `ip netns exec` execs the command itself, so the pid is the process's own.
func (h *Host) Start(name string, args ...string) *Proc {
	l := h.lab
	l.t.Helper()
	p := &Proc{host: h, name: name, log: filepath.Join(h.Dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 when killed by a signal).
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return 0, fmt.Errorf("lab: %s on %s still running after %s", p.name, p.host.Name, timeout)
	}
	var ee *exec.ExitError
	if p.err == nil {
		return 0, nil
	} else if errors.As(p.err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, p.err
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
