package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// probeTimeout bounds every Probe in these tests; the ones that time out do
// so on purpose.
const probeTimeout = 300 * time.Millisecond

func probe(t *testing.T, addr string, c Check) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), probeTimeout)
	defer cancel()
	return Probe(ctx, addr, c)
}

// listen returns a TCP listener on 127.0.0.1:0, closed at cleanup.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// closedAddr returns an address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestProbeTCP(t *testing.T) {
	checkGoroutines(t)
	l := listen(t)
	if err := probe(t, l.Addr().String(), Check{Kind: KindTCP}); err != nil {
		t.Errorf("listening port: got %v, want nil", err)
	}
	err := probe(t, closedAddr(t), Check{Kind: KindTCP})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: got %v, want connection refused", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "health: tcp check: dial tcp 127.0.0.1:") {
		t.Errorf("closed port: got %q, want health: tcp check: dial tcp ...", err)
	}
}

// fakeRedis serves one canned reply per connection after reading a PING.
// reply "" never answers; the conn stays open until the test ends.
func fakeRedis(t *testing.T, reply string) string {
	t.Helper()
	l := listen(t)
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, len(redisPing))
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if string(buf) != redisPing {
					_, _ = fmt.Fprintf(c, "-ERR fake: bad request %q\r\n", buf)
					return
				}
				if reply == "" {
					<-done
					return
				}
				_, _ = io.WriteString(c, reply)
			})
		}
	})
	return l.Addr().String()
}

func TestProbeRedis(t *testing.T) {
	checkGoroutines(t)
	tests := []struct {
		name    string
		reply   string // "" = never answers
		wantErr string // "" = healthy; "timeout" = a timeout error; else the text after "of ADDR: "
	}{
		{"pong", "+PONG\r\n", ""},
		{"noauth", "-NOAUTH Authentication required.\r\n", ""},
		{"old auth error", "-ERR operation not permitted\r\n", ""},
		{"err auth", "-ERR Client sent AUTH, but no password is set\r\n", ""},
		{"loading", "-LOADING Redis is loading the dataset in memory\r\n", `got "-LOADING Redis is loading the dataset in memory"`},
		{"masterdown", "-MASTERDOWN Link with MASTER is down\r\n", `got "-MASTERDOWN Link with MASTER is down"`},
		{"other error", "-ERR unknown command\r\n", `got "-ERR unknown command"`},
		{"garbage", "HTTP/1.1 400 Bad Request\r\n\r\n", `got "HTTP/1.1 400 Bad Request"`},
		{"no line end", "+PONG", `got "+PONG", then EOF`},
		{"endless line", strings.Repeat("x", 1000), `got "` + strings.Repeat("x", redisMaxReply) + `"... (no line end in 256 bytes)`},
		{"never answers", "", "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeRedis(t, tc.reply)
			start := time.Now()
			err := probe(t, addr, Check{Kind: KindRedis})
			switch tc.wantErr {
			case "":
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
			case "timeout":
				if !isTimeout(err) {
					t.Errorf("got %v, want a timeout error", err)
				}
				if d := time.Since(start); d > probeTimeout+2*time.Second {
					t.Errorf("took %v, want about %v", d, probeTimeout)
				}
			default:
				want := "health: redis check of " + addr + ": " + tc.wantErr
				if err == nil || err.Error() != want {
					t.Errorf("got %v, want %q", err, want)
				}
			}
		})
	}

	t.Run("closes without reply", func(t *testing.T) {
		l := listen(t)
		go func() { // exits when the listener closes at cleanup
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		err := probe(t, l.Addr().String(), Check{Kind: KindRedis})
		if err == nil {
			t.Fatal("got nil, want an error")
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		if err := probe(t, closedAddr(t), Check{Kind: KindRedis}); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("got %v, want connection refused", err)
		}
	})

	t.Run("cancel without deadline", func(t *testing.T) {
		addr := fakeRedis(t, "")
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- Probe(ctx, addr, Check{Kind: KindRedis}) }()
		cancel()
		select {
		case err := <-errc:
			if err == nil {
				t.Errorf("got nil, want an error")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Probe did not return after cancel")
		}
	})
}

func TestProbeHTTP(t *testing.T) {
	checkGoroutines(t)
	var (
		mu    sync.Mutex
		hosts []string
		uris  []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })
	mux.HandleFunc("/notfound", http.NotFound)
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/record", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts, uris = append(hosts, r.Host), append(uris, r.RequestURI)
		mu.Unlock()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	tests := []struct {
		path    string
		wantErr string // "" = healthy; "timeout"; else the full message
	}{
		{"/ok", ""},
		{"/redirect", ""}, // 302 to a failing page: not followed, healthy
		{"/fail", "health: http check of " + addr + ": GET /fail: status 500 Internal Server Error"},
		{"/notfound", "health: http check of " + addr + ": GET /notfound: status 404 Not Found"},
		{"/slow", "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			err := probe(t, addr, Check{Kind: KindHTTP, Path: tc.path})
			switch tc.wantErr {
			case "":
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
			case "timeout":
				if !isTimeout(err) {
					t.Errorf("got %v, want a timeout error", err)
				}
			default:
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("got %v, want %q", err, tc.wantErr)
				}
			}
		})
	}

	t.Run("host header and path", func(t *testing.T) {
		if err := probe(t, addr, Check{Kind: KindHTTP, Path: "/record?a=1&b=%20"}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if want := []string{addr}; fmt.Sprint(hosts) != fmt.Sprint(want) {
			t.Errorf("Host: got %q, want %q", hosts, want)
		}
		if want := []string{"/record?a=1&b=%20"}; fmt.Sprint(uris) != fmt.Sprint(want) {
			t.Errorf("request URI: got %q, want %q", uris, want)
		}
	})

	t.Run("empty path means /", func(t *testing.T) {
		got := make(chan string, 1)
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.RequestURI }))
		defer s.Close()
		if err := probe(t, s.Listener.Addr().String(), Check{Kind: KindHTTP}); err != nil {
			t.Fatal(err)
		}
		if uri := <-got; uri != "/" {
			t.Errorf("got %q, want %q", uri, "/")
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		if err := probe(t, closedAddr(t), Check{Kind: KindHTTP, Path: "/"}); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("got %v, want connection refused", err)
		}
	})
}

func TestProbeExec(t *testing.T) {
	checkGoroutines(t)
	tests := []struct {
		name     string
		cmd      string
		wantCode int // -1 = healthy
	}{
		{"true", "true", -1},
		{"false", "false", 1},
		{"exit 3 with output", "echo not ready >&2; exit 3", 3},
		{"env", `test "$AMBASSADOR_SERVICE_ADDR" = 10.1.2.3:6379`, -1},
		{"missing binary", "/nonexistent/checker", 127},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := probe(t, "10.1.2.3:6379", Check{Kind: KindExec, Command: tc.cmd})
			if tc.wantCode < 0 {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			ee, ok := errors.AsType[*exec.ExitError](err)
			if !ok || ee.ExitCode() != tc.wantCode {
				t.Fatalf("got %v, want exit status %d", err, tc.wantCode)
			}
			if want := "health: exec check of 10.1.2.3:6379: " + strconv.Quote(tc.cmd) + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %q, want prefix %q", err, want)
			}
		})
	}

	t.Run("output in error", func(t *testing.T) {
		err := probe(t, "x:1", Check{Kind: KindExec, Command: "echo not ready; exit 1"})
		want := `health: exec check of x:1: "echo not ready; exit 1": exit status 1 (output "not ready")`
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	})

	t.Run("timeout kills the process group", func(t *testing.T) {
		dir := t.TempDir()
		pidFile := filepath.Join(dir, "pids")
		// A background child that holds stdout open, and a foreground one.
		cmd := fmt.Sprintf(`sleep 60 & echo $! > %[1]s.tmp; echo $$ >> %[1]s.tmp; mv %[1]s.tmp %[1]s; sleep 60`, pidFile)
		start := time.Now()
		err := probe(t, "x:1", Check{Kind: KindExec, Command: cmd})
		elapsed := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) || !isTimeout(err) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
		// The check ends at its timeout (plus slack for a loaded box): the
		// child holding stdout does not hold it up.
		if limit := probeTimeout + 200*time.Millisecond; elapsed >= limit {
			t.Errorf("Probe took %v, want < %v", elapsed, limit)
		}
		b, rerr := os.ReadFile(pidFile)
		if rerr != nil {
			t.Fatalf("shell did not record its pids: %v", rerr)
		}
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			waitFor(t, "pid "+f+" to die", func() bool { return !alive(pid) })
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := Probe(ctx, "x:1", Check{Kind: KindExec, Command: "true"}); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
}

// alive reports whether pid exists and is not a zombie (a reparented child
// may wait for a reaper that never comes in a container).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestProbeOtherKinds(t *testing.T) {
	if err := probe(t, closedAddr(t), Check{Kind: KindNone}); err != nil {
		t.Errorf("none: got %v, want nil", err)
	}
	for _, kind := range []string{"", "grpc"} {
		err := probe(t, "127.0.0.1:1", Check{Kind: kind})
		want := fmt.Sprintf("health: check of 127.0.0.1:1: unknown kind %q", kind)
		if err == nil || err.Error() != want {
			t.Errorf("kind %q: got %v, want %q", kind, err, want)
		}
	}
}

// TestProbeExecLeftoverChild runs a check whose shell passes but leaves a
// child running that holds the output open: the check passes, and the
// child does not outlive it.
func TestProbeExecLeftoverChild(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	cmd := "sleep 30 & echo $! > " + pidFile + "; true"
	if err := probe(t, "10.1.2.3:6379", Check{Kind: KindExec, Command: cmd}); err != nil {
		t.Fatalf("got %v, want nil: the shell exited 0", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		// Gone, or a zombie waiting for init to reap it: not running.
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check's leftover child %s still runs: %s", pid, stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProbeExecStrayHolder runs checks whose shell ends quickly but leaves a
// descendant outside its process group (setsid) holding the output pipe:
// killing the group does not reach it, and the check must still end within
// its timeout, not wait for the stray to exit or close the pipe.
func TestProbeExecStrayHolder(t *testing.T) {
	checkGoroutines(t)
	// The shell needs about 20 ms to start the stray and exit; the timeout
	// leaves room for a loaded box. timeout+slack stays well under the 500
	// ms os/exec used to wait on the pipe after the shell (its WaitDelay),
	// so the test tells the two apart.
	const timeout = 250 * time.Millisecond
	const slack = 150 * time.Millisecond
	tests := []struct {
		name    string
		tail    string // run after the stray started
		wantErr string // "" = healthy; "timeout"; else the error after `"CMD": `
	}{
		{"shell passes", "true", ""},
		{"shell fails with output", "echo not ready; exit 1", `exit status 1 (output "not ready")`},
		{"shell times out", "echo waiting; sleep 30", "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "stray.pid")
			t.Cleanup(func() {
				if b, err := os.ReadFile(pidFile); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
						if p, err := os.FindProcess(pid); err == nil {
							_ = p.Kill()
						}
					}
				}
			})
			// The stray records its own pid once it has left the group; the
			// shell waits for that, so the group kill cannot reach it.
			cmd := fmt.Sprintf(`setsid sh -c 'echo $$ > %[1]s.tmp; mv %[1]s.tmp %[1]s; exec sleep 30' & `+
				`while [ ! -e %[1]s ]; do sleep 0.01; done; %[2]s`, pidFile, tc.tail)
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			start := time.Now()
			err := Probe(ctx, "x:1", Check{Kind: KindExec, Command: cmd})
			elapsed := time.Since(start)
			switch {
			case tc.wantErr == "":
				if err != nil {
					t.Errorf("got %v, want nil: the shell exited 0", err)
				}
			case tc.wantErr == "timeout":
				if !errors.Is(err, context.DeadlineExceeded) || !isTimeout(err) || !strings.HasSuffix(err.Error(), `(output "waiting")`) {
					t.Errorf("got %v, want context.DeadlineExceeded with the output", err)
				}
			default:
				if want := `health: exec check of x:1: ` + strconv.Quote(cmd) + `: ` + tc.wantErr; err == nil || err.Error() != want {
					t.Errorf("got %v, want %q", err, want)
				}
			}
			if limit := timeout + slack; elapsed >= limit {
				t.Errorf("Probe took %v, want < %v (timeout %v)", elapsed, limit, timeout)
			}
			// The case is only worth something if the stray outlived the check.
			b, rerr := os.ReadFile(pidFile)
			if rerr != nil {
				t.Fatalf("the stray did not record its pid: %v", rerr)
			}
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); !alive(pid) {
				t.Errorf("stray %d is gone: it did not hold the pipe past the check", pid)
			}
		})
	}
}
