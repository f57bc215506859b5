package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
)

// streamHelpers are the lab helper modes of the stream-ending lab; the
// labHelper switch falls back to them.
//
//	serve-ends ADDR          per connection: read one command byte, then
//	                         R: send "partial", reset;  W: send "k", read until the end, log it;
//	                         C: send "bye", close cleanly; E: echo until the end, log it;
//	                         H: send "banner", half-close, read until the end, log it;
//	                         F: read to the client's EOF, then watch for a reset, silent, and log
//	                            "end F <end> after=<ms since the EOF>";
//	                         G: send "banner", half-close, reset 200 ms later.
//	                         "the end" is logged as "end <cmd> reset", "end <cmd> eof" or "end <cmd> <err>"
//	ends ADDR CMD            connect, send CMD and act as its client: R, C: read to the end;
//	                         W: read "k", then reset; E: one byte echoed, then wait for the end;
//	                         H, G: read the banner to EOF, then wait for the end;
//	                         F: half-close, reset 200 ms later.
//	                         Prints "end reset|eof|<err> after=<ms since the last byte> got=<quoted>"
//	hold ADDR N              open N connections to a serve-ends service, 50 at a time, get one
//	                         echo on each (E), print "READY opened=N failed=M", hold them until killed
var streamHelpers = map[string]func(args []string) error{
	"serve-ends": func(args []string) error { return serve(args[0], serveEnds) },
	"ends":       func(args []string) error { return clientEnds(args[0], args[1]) },
	"hold":       func(args []string) error { return holdConns(args[0], atoi(args[1])) },
}

func holdConns(addr string, n int) error {
	conns := make([]net.Conn, n)
	var (
		mu       sync.Mutex
		failed   int
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, 50)
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err = io.WriteString(c, "Ex"); err == nil {
					_, err = io.ReadFull(c, make([]byte, 1))
				}
				_ = c.SetDeadline(time.Time{})
			}
			if err != nil {
				mu.Lock()
				failed++
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
				if c != nil {
					c.Close()
				}
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	fmt.Printf("READY opened=%d failed=%d first_err=%v\n", n-failed, failed, firstErr)
	select {} // held until the lab kills this process
}

func endOf(err error) string {
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	return err.Error()
}

func serveEnds(c *net.TCPConn) error {
	var cmd [1]byte
	if _, err := io.ReadFull(c, cmd[:]); err != nil {
		return err
	}
	logEnd := func(err error) { fmt.Printf("end %c %s\n", cmd[0], endOf(err)) }
	switch cmd[0] {
	case 'R':
		_, _ = io.WriteString(c, "partial")
		time.Sleep(200 * time.Millisecond) // let "partial" cross both hops before the reset overtakes it
		return c.SetLinger(0)              // serve closes c: an RST
	case 'W':
		_, _ = io.WriteString(c, "k")
		_, err := io.Copy(io.Discard, c)
		logEnd(err)
	case 'C':
		_, _ = io.WriteString(c, "bye")
	case 'E':
		// Through a buffer, not io.Copy's splice: that would hold a pipe
		// (two more descriptors) per connection, and TestLabTenThousand
		// holds thousands.
		_, err := io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, make([]byte, 512))
		logEnd(err)
	case 'H':
		_, _ = io.WriteString(c, "banner")
		_ = c.CloseWrite()
		_, err := io.Copy(io.Discard, c)
		logEnd(err)
	case 'F':
		if _, err := io.Copy(io.Discard, c); err != nil {
			logEnd(err)
			return nil
		}
		// Silent from here: only the socket's state can show a reset.
		eof := time.Now()
		var end error
		for end == nil && time.Since(eof) < 10*time.Second {
			time.Sleep(20 * time.Millisecond) // polling for the reset, not synchronization
			end = socketReset(c)
		}
		fmt.Printf("end F %s after=%d\n", endOf(end), time.Since(eof).Milliseconds())
	case 'G':
		_, _ = io.WriteString(c, "banner")
		_ = c.CloseWrite()
		time.Sleep(200 * time.Millisecond) // let the FIN cross both hops before the reset overtakes it
		return c.SetLinger(0)              // serve closes c: an RST
	}
	return nil
}

func clientEnds(addr, cmd string) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, cmd); err != nil {
		return err
	}
	var got []byte
	last := time.Now()
	readToEnd := func() error {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				got = append(got, buf[:n]...)
				last = time.Now()
			}
			if err != nil {
				return err
			}
		}
	}
	var end error
	switch cmd {
	case "R", "C":
		end = readToEnd()
	case "W":
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return err
		}
		_ = c.SetLinger(0)
		fmt.Println("end sent-reset after=0 got=\"\"")
		return nil
	case "F":
		if err := c.CloseWrite(); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond) // let the FIN cross both hops before the reset overtakes it
		_ = c.SetLinger(0)
		fmt.Println("end sent-reset after=0 got=\"\"")
		return nil
	case "E":
		if _, err := io.WriteString(c, "x"); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return err
		}
		last = time.Now()
		end = readToEnd()
	case "H", "G":
		if err := readToEnd(); err != io.EOF {
			return fmt.Errorf("half-close: want the banner then EOF, got %q, %v", got, err)
		}
		// After the FIN reads return EOF whatever comes, and writing would
		// be traffic: watch the socket's state instead. Only an RST takes a
		// socket in CLOSE_WAIT to CLOSE; Linux records it as EPIPE.
		for end == nil {
			time.Sleep(20 * time.Millisecond) // polling for the reset, not synchronization
			end = socketReset(c)
		}
	default:
		return fmt.Errorf("ends: unknown command %q", cmd)
	}
	fmt.Printf("end %s after=%d got=%q\n", endOf(end), time.Since(last).Milliseconds(), got)
	return nil
}

// TestLabStreamEnds proves on real hosts that the two-hop path (b's
// listener → a's data port → the service on a's loopback) never cuts a
// stream silently, with and without --key: a reset on either end arrives
// as a reset at the other, a clean end stays clean, and --idle-timeout and
// --half-close-timeout reset silent connections, counted in `services`.
// Each runs on the event loop and on the goroutine path
// (AMBASSADOR_FORWARD_LOOP=0), which carries --credentials routes.
func TestLabStreamEnds(t *testing.T) {
	for _, v := range []struct {
		name              string
		keyed, goroutines bool
	}{
		{"plain", false, false},
		{"key", true, false},
		{"plain goroutines", false, true},
		{"key goroutines", true, true},
	} {
		keyed := v.keyed
		t.Run(v.name, func(t *testing.T) {
			if v.goroutines {
				t.Setenv("AMBASSADOR_FORWARD_LOOP", "0") // the nodes inherit it
			}
			l := lab.New(t)
			a, b := l.AddHost("a"), l.AddHost("b")
			service := startHelper(t, a, "ends-service", "serve-ends", "127.0.0.1:12600")
			// Both hops run the same timeouts; idle is long against the
			// half-close one so each test hits the one it means.
			args := []string{"--idle-timeout", "3s", "--half-close-timeout", "1s"}
			if keyed {
				kf := filepath.Join(t.TempDir(), "key")
				if err := os.WriteFile(kf, []byte(labKey+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--key-file", kf)
			}
			startNode(a, append(args, "--announce", "ends:7000=12600")...)
			startNode(b, args...)
			waitNodesOn(t, b, "ends", 1)
			svc := "127.0.0.1:7000"

			run := func(t *testing.T, cmd string) (end string, after int, got string) {
				t.Helper()
				out := helper(t, b, 40*time.Second, "ends", svc, cmd)
				if _, err := fmt.Sscanf(out, "end %s after=%d got=%q", &end, &after, &got); err != nil {
					t.Fatalf("ends %s: %q: %v", cmd, out, err)
				}
				return end, after, got
			}
			t.Run("service resets: the client reads a reset after the bytes sent", func(t *testing.T) {
				if end, _, got := run(t, "R"); end != "reset" || got != "partial" {
					t.Errorf("client: end %s, got %q; want reset after %q", end, got, "partial")
				}
			})
			t.Run("client resets: the service reads a reset", func(t *testing.T) {
				run(t, "W")
				lab.WaitFor(t, 10*time.Second, "the service to see the end", func() bool { return strings.Contains(service.Log(), "end W ") })
				if !strings.Contains(service.Log(), "end W reset") {
					t.Errorf("service log: %s, want end W reset", service.Log())
				}
			})
			// A peer that half-closed and then resets: the other peer has
			// read the FIN and stays silent, so only the reset tells it the
			// stream was cut. It must come at once, not when
			// --half-close-timeout (1s) would reset it anyway.
			t.Run("client half-closes, then resets: the silent service reads a reset at once", func(t *testing.T) {
				run(t, "F")
				lab.WaitFor(t, 15*time.Second, "the service to see the end", func() bool { return strings.Contains(service.Log(), "end F ") })
				var end string
				var after int
				log := service.Log()
				if _, err := fmt.Sscanf(log[strings.Index(log, "end F "):], "end F %s after=%d", &end, &after); err != nil {
					t.Fatalf("service log: %s: %v", log, err)
				}
				t.Logf("FIGURE client's reset after its half-close reached the service %d ms after the FIN", after)
				if end != "reset" || after > 700 {
					t.Errorf("service: end %s %d ms after the client's FIN; want a reset within 700 ms (the client reset 200 ms after it)", end, after)
				}
			})
			t.Run("service half-closes, then resets: the silent client reads a reset at once", func(t *testing.T) {
				end, after, got := run(t, "G")
				t.Logf("FIGURE service's reset after its half-close reached the client %d ms after the banner", after)
				if end != "reset" || got != "banner" || after > 700 {
					t.Errorf("client: end %s %d ms after %q; want a reset within 700 ms after %q (the service reset 200 ms after it)", end, after, got, "banner")
				}
			})
			t.Run("a clean end stays clean", func(t *testing.T) {
				if end, _, got := run(t, "C"); end != "eof" || got != "bye" {
					t.Errorf("client: end %s, got %q; want eof after %q", end, got, "bye")
				}
			})
			// Both timeouts reset both ends; the service script's mode
			// letter picks which one fires (E: idle, H: half-closed).
			for _, tc := range []struct {
				name, mode, figure string
				wantMS, lo, hi     int
			}{
				{"idle timeout resets both ends", "E", "idle connection (--idle-timeout 3s)", 3000, 2700, 6000},
				{"half-close timeout resets both ends", "H", "half-closed connection (--half-close-timeout 1s)", 1000, 800, 4000},
			} {
				t.Run(tc.name, func(t *testing.T) {
					end, after, _ := run(t, tc.mode)
					t.Logf("FIGURE %s reset after %d ms", tc.figure, after)
					if end != "reset" || after < tc.lo || after > tc.hi {
						t.Errorf("client: end %s after %d ms, want reset after about %d", end, after, tc.wantMS)
					}
					lab.WaitFor(t, 10*time.Second, "the service to see the end", func() bool { return strings.Contains(service.Log(), "end "+tc.mode+" ") })
					if !strings.Contains(service.Log(), "end "+tc.mode+" reset") {
						t.Errorf("service log: %s, want end %s reset", service.Log(), tc.mode)
					}
				})
			}
			t.Run("services counts the cuts on both hops", func(t *testing.T) {
				// Four resets (R, W, F, G), each a stream error on both hops
				// (b's listener, a's data port); each timeout fires on at
				// least one hop, and the other hop reads the reset it sent,
				// or times out too.
				var idleAll, halfAll uint64
				for _, h := range []*lab.Host{a, b} {
					var errs, idle, half uint64
					lab.WaitFor(t, 10*time.Second, "the cut counts on "+h.Name, func() bool {
						for _, s := range services(t, h).Services {
							if s.Name == "ends" {
								errs, idle, half = s.StreamErrors, s.IdleTimeouts, s.HalfCloseTimeouts
							}
						}
						return errs+idle+half >= 6
					})
					t.Logf("FIGURE %s: services cut counts err/idle/half = %d/%d/%d", h.Name, errs, idle, half)
					if errs < 4 || errs+idle+half != 6 {
						t.Errorf("%s: cuts err/idle/half %d/%d/%d, want 6 in all, at least 4 of them errors", h.Name, errs, idle, half)
					}
					idleAll += idle
					halfAll += half
				}
				if idleAll == 0 || halfAll == 0 {
					t.Errorf("idle timeouts %d and half-close timeouts %d over both hops, want at least 1 each", idleAll, halfAll)
				}
			})
		})
	}
}

// TestLabTenThousand holds 10,000 connections open at once through two
// hops (b's listener, a's data port) to a service on a, each answered,
// and reports what they cost: the RSS of both ambassadors and the
// machine's Slab per connection. Heavy (60,000 sockets): it runs only with
// AMB_LAB_10K set (a number of connections, or 1 for 10000), under the
// shared lock:
//
//	AMB_LAB_10K=1 flock /tmp/amb-heavy.lock go test -run TestLabTenThousand -v .
//
// Each ambassador holds two descriptors per connection (b: the client's
// and the one to a; a: the handoff and the one to the service), so a
// node's RLIMIT_NOFILE caps the count: where it is too low for the count
// asked for (and cannot be raised: that takes CAP_SYS_RESOURCE), the test
// holds the most the limit allows and says so. Only the ambassadors are
// limited: the clients are spread over processes of at most holdPerProc
// connections each, and the echo service needs one descriptor per
// connection, half of what a node needs.
func TestLabTenThousand(t *testing.T) {
	want, _ := strconv.Atoi(os.Getenv("AMB_LAB_10K"))
	switch {
	case want == 0:
		t.Skip("heavy: set AMB_LAB_10K=1 (10,000 connections) or a number, and hold /tmp/amb-heavy.lock")
	case want == 1:
		want = 10000
	}
	for _, keyed := range []bool{false, true} {
		name := "plain"
		if keyed {
			name = "key"
		}
		t.Run(name, func(t *testing.T) {
			l := lab.New(t)
			a, b := l.AddHost("a"), l.AddHost("b")
			a.Start("ends-service", "env", "AMB_LAB_HELPER=serve-ends", self(t), "127.0.0.1:12600")
			args := []string{"--log-level", "info"}
			if keyed {
				kf := filepath.Join(t.TempDir(), "key")
				if err := os.WriteFile(kf, []byte(labKey+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--key-file", kf)
			}
			nodeA := a.Start("ambassador", append([]string{binary, "--socket", socketOf(a)}, append(args, "--announce", "ends:7000=12600")...)...)
			nodeB := b.Start("ambassador", append([]string{binary, "--socket", socketOf(b)}, args...)...)
			waitNodesOn(t, b, "ends", 1)

			n, why := connsAllowed(t, want, nodeA.Pid(), nodeB.Pid())
			if n < want {
				t.Logf("FIGURE %s: holding %d connections, not %d: %s", name, n, want, why)
			}
			rssA0, rssB0, slab0 := vmRSS(t, nodeA.Pid()), vmRSS(t, nodeB.Pid()), meminfo(t, "Slab")
			start := time.Now()
			var holders []*lab.Proc
			for i := 0; i < n; i += holdPerProc {
				holders = append(holders, b.Start(fmt.Sprintf("hold-%d", len(holders)), "env", "AMB_LAB_HELPER=hold", self(t), "127.0.0.1:7000", strconv.Itoa(min(holdPerProc, n-i))))
			}
			var opened, failed int
			for _, h := range holders {
				h.WaitUntil(5*time.Minute, "the holder to open its connections", func() bool { return strings.Contains(h.Log(), "READY") })
				var o, f int
				if _, err := fmt.Sscanf(h.Log(), "READY opened=%d failed=%d", &o, &f); err != nil {
					t.Fatalf("holder: %q", h.Log())
				}
				opened, failed = opened+o, failed+f
				if f != 0 {
					t.Errorf("holder: %s", strings.TrimSpace(h.Log()))
				}
			}
			took := time.Since(start)
			time.Sleep(time.Second) // let lazy allocations settle before reading memory
			rssA, rssB, slab := vmRSS(t, nodeA.Pid()), vmRSS(t, nodeB.Pid()), meminfo(t, "Slab")
			per := func(after, before int) float64 { return float64(after-before) / float64(n) }
			t.Logf("FIGURE %s: %d of %d connections open and answered through two hops in %v (%d client processes); descriptors open: b %d, a %d; per connection: RSS b %.1f KiB, a %.1f KiB; machine Slab %.1f KiB (all six sockets of a connection)",
				name, opened, n, took.Round(time.Millisecond), len(holders), fdCount(t, nodeB.Pid()), fdCount(t, nodeA.Pid()), per(rssB, rssB0), per(rssA, rssA0), per(slab, slab0))
			if opened != n || failed != 0 {
				t.Errorf("%d of %d connections answered, %d failed", opened, n, failed)
			}
			for _, h := range []*lab.Host{a, b} {
				for _, s := range services(t, h).Services {
					if s.Name == "ends" && h == b && s.Active != uint64(n) {
						t.Errorf("b's listener: %d active, want %d", s.Active, n)
					}
				}
			}
		})
	}
}

// holdPerProc is the most connections one holder process opens: the
// client side is spread so that its descriptors never limit the test.
const holdPerProc = 2500

// fdSlack is room, per node, for descriptors a node opens besides its
// connections while they are held: gossip streams, health checks, the
// control-socket calls of the test.
const fdSlack = 100

// connsAllowed returns how many connections both nodes (pids) can hold at
// two descriptors each, at most want, and why when that is fewer: each
// node's own RLIMIT_NOFILE (which Go raises to the hard limit at start)
// less the descriptors it already has open and fdSlack.
func connsAllowed(t *testing.T, want int, pids ...int) (int, string) {
	t.Helper()
	n, why := want, ""
	for _, pid := range pids {
		limit, open := nofile(t, pid), fdCount(t, pid)
		if m := (limit - open - fdSlack) / 2; m < n {
			n = m
			why = fmt.Sprintf("RLIMIT_NOFILE of ambassador pid %d is %d (the hard limit here; raising it needs CAP_SYS_RESOURCE), %d already open, %d kept spare, 2 per connection", pid, limit, open, fdSlack)
		}
	}
	if n <= 0 {
		t.Fatalf("no room for connections: %s", why)
	}
	return n, why
}

// nofile is the soft "Max open files" of pid.
func nofile(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					return n
				}
				return 1 << 30 // unlimited
			}
		}
	}
	t.Fatalf("no Max open files for pid %d", pid)
	return 0
}

// fdCount is the number of descriptors pid has open.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// vmRSS returns the VmRSS of pid, in KiB.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return kb
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// meminfo returns a /proc/meminfo field, in KiB.
func meminfo(t *testing.T, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return kb
		}
	}
	t.Fatalf("no %s in /proc/meminfo", field)
	return 0
}
