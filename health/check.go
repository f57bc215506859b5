package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Check kinds, the values of Check.Kind.
const (
	KindTCP   = "tcp"
	KindRedis = "redis"
	KindHTTP  = "http"
	KindExec  = "exec"
	KindNone  = "none"
)

// Check says how to probe a service. It is a comparable value; the zero
// Check is invalid (Probe rejects it).
type Check struct {
	// Kind is one of KindTCP (connect), KindRedis (send PING, expect +PONG;
	// an auth-required reply such as -NOAUTH also counts as healthy),
	// KindHTTP (GET Path over HTTP/1.1, healthy on 2xx/3xx), KindExec (run
	// Command with sh -c, healthy on exit 0) or KindNone (always healthy).
	Kind string
	// Path is the request path for KindHTTP; it starts with "/" and may
	// carry a query. Empty means "/". Unused by other kinds.
	Path string
	// Command is the shell command for KindExec. Unused by other kinds.
	Command string
}

// ParseCheck parses a check as written after NAME= in --check: "tcp",
// "redis", "http" (path "/"), "http:/path", "exec:CMD" or "none". The error
// names the bad value. It is a pure function, safe for concurrent use.
func ParseCheck(s string) (Check, error) {
	kind, arg, hasArg := strings.Cut(s, ":")
	switch kind {
	case KindTCP, KindRedis, KindNone:
		if hasArg {
			return Check{}, fmt.Errorf("health: check %q: %s takes no argument", s, kind)
		}
		return Check{Kind: kind}, nil
	case KindHTTP:
		if !hasArg {
			return Check{Kind: KindHTTP, Path: "/"}, nil
		}
		if err := validPath(arg); err != nil {
			return Check{}, fmt.Errorf("health: check %q: %w", s, err)
		}
		return Check{Kind: KindHTTP, Path: arg}, nil
	case KindExec:
		switch {
		case !hasArg || strings.TrimSpace(arg) == "":
			return Check{}, fmt.Errorf("health: check %q: exec needs a command (exec:CMD)", s)
		case strings.IndexByte(arg, 0) >= 0:
			return Check{}, fmt.Errorf("health: check %q: exec command contains a NUL byte", s)
		}
		return Check{Kind: KindExec, Command: arg}, nil
	}
	return Check{}, fmt.Errorf("health: check %q: unknown kind %q (want tcp, redis, http, http:/PATH, exec:CMD or none)", s, kind)
}

// validPath accepts a request path (with optional query) that can go on an
// HTTP/1.1 request line unchanged.
func validPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("http path %q must start with /", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return fmt.Errorf("http path %q has a space, control or non-ASCII byte at %d", p, i)
		}
	}
	if _, err := url.ParseRequestURI(p); err != nil {
		return fmt.Errorf("http path %q: %w", p, err)
	}
	return nil
}

// String returns c in the form ParseCheck accepts: ParseCheck(c.String())
// gives back c for every c that ParseCheck returned.
func (c Check) String() string {
	switch c.Kind {
	case KindHTTP:
		if c.Path == "" || c.Path == "/" {
			return KindHTTP
		}
		return KindHTTP + ":" + c.Path
	case KindExec:
		return KindExec + ":" + c.Command
	}
	return c.Kind
}

// execOutputWait bounds how long a failed exec check waits for the rest of
// its output once the shell has exited and its group was killed. EOF
// normally comes at once; only a descendant that left the group (setsid, a
// daemon that double-forks) keeps the pipe open, and the check must not wait
// for it. The wait also ends at ctx's deadline, but lasts at least
// execOutputMin, so that a check killed for its timeout still reports what
// its group wrote: a check overruns its timeout by at most that, and only
// when it failed and such a descendant holds its output.
const (
	execOutputWait = 100 * time.Millisecond
	execOutputMin  = 10 * time.Millisecond
)

// Probe runs one check of c against addr (host:port), bounded by ctx, and
// returns nil when the service is healthy. Otherwise the error says what
// failed, for example `health: redis check of 127.0.0.1:6379: got
// "-LOADING ..."`. A check that ran out of time returns an error e for which
// errors.As(e, &netErr) && netErr.Timeout() holds.
//
// An exec check runs Command with /bin/sh -c in its own process group, with
// AMBASSADOR_SERVICE_ADDR=addr added to the environment; when ctx ends the
// whole group is killed with SIGKILL, as is whatever the shell left in it
// when it exits. The check ends with the shell: a descendant that left the
// group and still holds the output does not hold up the check (see
// execOutputWait). Probe blocks until the check is done, is safe for
// concurrent use and keeps no state between calls.
func Probe(ctx context.Context, addr string, c Check) error {
	var err error
	switch c.Kind {
	case KindTCP:
		err = probeTCP(ctx, addr)
	case KindRedis:
		err = probeRedis(ctx, addr)
	case KindHTTP:
		err = probeHTTP(ctx, addr, c.Path)
	case KindExec:
		return probeExec(ctx, addr, c.Command)
	case KindNone:
		return nil
	default:
		return fmt.Errorf("health: check of %s: unknown kind %q", addr, c.Kind)
	}
	if err == nil {
		return nil
	}
	// net errors already carry the address; add it only to the others.
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return fmt.Errorf("health: %s check: %w", c.Kind, err)
	}
	return fmt.Errorf("health: %s check of %s: %w", c.Kind, addr, err)
}

func dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func probeTCP(ctx context.Context, addr string) error {
	conn, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// redisPing is PING as a RESP array, which every Redis version and most
// Redis-compatible servers accept.
const redisPing = "*1\r\n$4\r\nPING\r\n"

// redisMaxReply caps the reply line we read; +PONG and error lines are short.
const redisMaxReply = 256

func probeRedis(ctx context.Context, addr string) error {
	conn, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	// Set after the deadline above, so a cancel can't be overwritten by it.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := io.WriteString(conn, redisPing); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(conn, redisMaxReply).ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return fmt.Errorf("got %q... (no line end in %d bytes)", line, len(line))
	case errors.Is(err, io.EOF) && len(line) > 0:
		return fmt.Errorf("got %q, then EOF", line)
	case err != nil:
		return fmt.Errorf("read reply: %w", err)
	}
	reply := strings.TrimRight(string(line), "\r\n")
	if redisUp(reply) {
		return nil
	}
	return fmt.Errorf("got %q", reply)
}

// redisUp reports whether a PING reply shows a server that is up and serving.
// A server that wants a password answers "-NOAUTH Authentication required"
// (Redis >= 2.8) or "-ERR operation not permitted" (older): it is up and
// answering, and clients that know the password can use it.
func redisUp(reply string) bool {
	switch {
	case reply == "+PONG":
		return true
	case strings.HasPrefix(reply, "-NOAUTH"):
		return true
	case strings.HasPrefix(reply, "-ERR"):
		low := strings.ToLower(reply)
		return strings.Contains(low, "auth") || strings.Contains(low, "operation not permitted")
	}
	return false
}

func probeHTTP(ctx context.Context, addr, path string) error {
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "ambassador-health")
	// One transport per check: no proxy from the environment, no pooled
	// connections to leak, and RoundTrip never follows redirects, so a 3xx
	// counts as an answer.
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{}).DialContext,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("GET %s: status %s", path, resp.Status)
	}
	return nil
}

func probeExec(ctx context.Context, addr, command string) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), "AMBASSADOR_SERVICE_ADDR="+addr) // last one wins
	newProcessGroup(cmd)
	// Kill the whole group: a shell's children would otherwise outlive the
	// timeout.
	cmd.Cancel = func() error { return killProcessGroup(cmd) }
	// Our own pipe, not an io.Writer: given a writer, os/exec copies the
	// output in a goroutine and Wait waits for its EOF, which a descendant
	// outside the group can hold off for as long as it lives. Given an
	// *os.File, Wait waits for the shell alone, and we decide below how long
	// the output is worth waiting for.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("health: exec check of %s: %q: %w", addr, command, err)
	}
	defer r.Close() // ends the reader below, and a stray's writes fail
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close() // the child has its copy; ours would keep EOF from ever coming
	if err != nil {
		return fmt.Errorf("health: exec check of %s: %q: %w", addr, command, err)
	}
	out := &headBuffer{max: 200}
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		_, _ = io.Copy(out, r) // until EOF, or r is closed
	}()
	err = cmd.Wait()
	// Whatever the shell left running in its group ends with the check:
	// checks run every interval, and leftover children would pile up.
	_ = killProcessGroup(cmd)
	if err == nil {
		return nil // the output only goes into errors
	}
	wait := execOutputWait
	if d, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(d)), execOutputMin)
	}
	timer := time.NewTimer(wait)
	select {
	case <-eof:
	case <-timer.C: // a descendant outside the group holds the pipe
	}
	timer.Stop()
	if ctxErr := ctx.Err(); ctxErr != nil && cmd.ProcessState != nil && !cmd.ProcessState.Exited() {
		err = ctxErr // killed for the timeout: "signal: killed" would hide why
	}
	if o := strings.TrimSpace(out.String()); o != "" {
		return fmt.Errorf("health: exec check of %s: %q: %w (output %q)", addr, command, err, o)
	}
	return fmt.Errorf("health: exec check of %s: %q: %w", addr, command, err)
}

// headBuffer keeps the first max bytes written to it and drops the rest
// while reporting success, so the command never sees a write error. It is
// safe for concurrent use: probeExec may read it while the copy still runs.
type headBuffer struct {
	max int
	mu  sync.Mutex
	b   []byte
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := min(len(p), h.max-len(h.b)); n > 0 {
		h.b = append(h.b, p[:n]...)
	}
	return len(p), nil
}

func (h *headBuffer) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return string(h.b)
}
