package mesh

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shortSocketPath is a control socket path for one test, short enough for
// sun_path whatever the test's name.
func shortSocketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "amb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ctl", "ambassador.sock")
}

func TestHostAllowed(t *testing.T) {
	listen := []string{"127.0.0.1:7948", "status.lan:7948"}
	tests := []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:7948", true},
		{"status.lan:7948", true},    // the listen address as configured
		{"STATUS.LAN:7948", true},    // host names are case-insensitive
		{"localhost:7948", true},     // localhost, any port (an ssh tunnel)
		{"localhost:8000", true},     //
		{"LocalHost", true},          //
		{"10.0.0.5:7948", true},      // an IP literal: no name to rebind
		{"127.0.0.1", true},          //
		{"[::1]:7948", true},         //
		{"[::1]", true},              //
		{"::1", true},                //
		{"", false},                  // no Host at all
		{"evil.example:7948", false}, // a rebound name
		{"evil.example", false},
		{"status.lan:80", false},          // the listen name on another port
		{"localhost.evil.example", false}, // looks like localhost
		{"127.0.0.1.nip.io:7948", false},  // looks like an IP
		{"localhost.:7948", false},        // a name that is not exactly localhost
		{"2130706433:7948", false},        // not a literal a browser would send
		{"[evil.example]:7948", false},    // brackets around a name
		{"127.0.0.1:7948@evil", false},    // junk
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			err := hostAllowed(tc.host, listen)
			if (err == nil) != tc.ok {
				t.Fatalf("hostAllowed(%q): got %v, want allowed=%v", tc.host, err, tc.ok)
			}
		})
	}
}

func TestCallerAllowed(t *testing.T) {
	lookup := errors.New("SO_PEERCRED: bad file descriptor")
	tests := []struct {
		name      string
		uid, self uint32
		err       error
		wantErr   string // "" = allowed
	}{
		{"root calls a root node", 0, 0, nil, ""},
		{"root calls a user's node", 0, 1000, nil, ""},
		{"the node's own user", 1000, 1000, nil, ""},
		{"another user, root node", 65534, 0, nil, "only root may change this node's announcements, not uid 65534"},
		{"another user, user node", 65534, 1000, nil, "only root or uid 1000 may change this node's announcements, not uid 65534"},
		{"look-up failed says uid 0", 0, 0, lookup, "cannot tell who is calling"},
		{"look-up failed says own uid", 1000, 1000, lookup, "cannot tell who is calling"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := callerAllowed(tc.uid, tc.err, tc.self)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want allowed", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestControlRequest(t *testing.T) {
	tests := []struct {
		name, method, ctype, origin string
		ok                          bool
	}{
		{"json post", "POST", "application/json", "", true},
		{"delete", "DELETE", "", "", true},
		{"web page", "POST", "application/json", "http://evil.example", false},
		{"form post", "POST", "text/plain", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(tc.method, "http://localhost/v1/announce", nil)
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if err := controlRequest(r); (err == nil) != tc.ok {
				t.Fatalf("got %v, want allowed=%v", err, tc.ok)
			}
		})
	}
}

func TestDefaultSocket(t *testing.T) {
	tests := []struct {
		name      string
		euid      int
		xdg       string
		want      string
		wantErr   string
		wantCands []string
	}{
		{"root", 0, "/run/user/0", SystemSocket, "", []string{SystemSocket}},
		{"user", 1000, "/run/user/1000", "/run/user/1000/ambassador/ambassador.sock", "", []string{"/run/user/1000/ambassador/ambassador.sock", SystemSocket}},
		{"user without XDG_RUNTIME_DIR", 1000, "", "", "--socket PATH", []string{SystemSocket}},
		{"relative XDG_RUNTIME_DIR", 1000, "run", "", "XDG_RUNTIME_DIR", []string{SystemSocket}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DefaultSocket(tc.euid, tc.xdg)
			if got != tc.want || (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %q, %v; want %q, error containing %q", got, err, tc.want, tc.wantErr)
			}
			if c := SocketCandidates(tc.euid, tc.xdg); strings.Join(c, " ") != strings.Join(tc.wantCands, " ") {
				t.Fatalf("candidates: got %q, want %q", c, tc.wantCands)
			}
		})
	}
}

// TestControlSocketRefusesOtherUsers plays another local user through the
// peer-credential seam: announce and drain are refused with 403 and a
// message naming who may, and the node's announcements do not change;
// the read-only documents still answer. Then the node's own user (and a
// failed look-up) get what they should.
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	echo := echoServer(t)
	self := uint32(os.Geteuid())
	caller := make(chan peerCred, 1) // what the seam says of the next connection
	a := startTestNode(t, "a", func(c *Config) {
		c.Announce = []Announce{{Name: "keep", Port: freePort(t), Host: "127.0.0.1", TargetPort: echo}}
		c.peerUID = func(net.Conn) (uint32, error) {
			p := <-caller
			return p.uid, p.err
		}
	})
	asWith := func(p peerCred, method, path string, body, v any) error {
		caller <- p
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return CallSocket(ctx, a.cfg.Socket, method, path, body, v)
	}
	as := func(uid uint32, method, path string, body, v any) error {
		return asWith(peerCred{uid: uid}, method, path, body, v)
	}
	announced := func() []string {
		var names []string
		for _, an := range a.view().announces {
			names = append(names, an.Name.String())
		}
		return names
	}
	spec := "evil:9=127.0.0.1:" + strconv.Itoa(freePort(t))
	other := uint32(4242)
	if other == self {
		other++
	}
	wantMsg := "node refused the request: only root or uid " + strconv.Itoa(int(self)) + " may change this node's announcements, not uid " + strconv.Itoa(int(other))
	if self == 0 {
		wantMsg = "node refused the request: only root may change this node's announcements, not uid " + strconv.Itoa(int(other))
	}

	var resp AnnounceRequest
	if err := as(other, "POST", "/v1/announce", AnnounceRequest{Announce: spec}, &resp); err == nil || err.Error() != wantMsg {
		t.Fatalf("announce as uid %d: got %v, want %q", other, err, wantMsg)
	}
	var out map[string]string
	if err := as(other, "DELETE", "/v1/announce/keep", nil, &out); err == nil || err.Error() != wantMsg {
		t.Fatalf("drain as uid %d: got %v, want %q", other, err, wantMsg)
	}
	if got := announced(); strings.Join(got, ",") != "keep" {
		t.Fatalf("after the refused calls the node announces %q, want keep only", got)
	}
	var sv Services
	if err := as(other, "GET", "/v1/services", nil, &sv); err != nil || sv.Node != "a" {
		t.Fatalf("services as uid %d: got %+v, %v; want a's document", other, sv, err)
	}

	if err := asWith(peerCred{uid: self, err: errors.New("no credentials")}, "POST", "/v1/announce", AnnounceRequest{Announce: spec}, &resp); err == nil || !strings.Contains(err.Error(), "cannot tell who is calling") {
		t.Fatalf("announce with a failed credential look-up: got %v, want a refusal", err)
	}
	if err := as(self, "POST", "/v1/announce", AnnounceRequest{Announce: spec}, &resp); err != nil {
		t.Fatalf("announce as the node's own uid %d: %v", self, err)
	}
	if err := as(0, "DELETE", "/v1/announce/evil", nil, &out); err != nil {
		t.Fatalf("drain as root: %v", err)
	}
	if got := announced(); strings.Join(got, ",") != "keep" {
		t.Fatalf("after announce and drain the node announces %q, want keep only", got)
	}
}

// TestStatusAddressReadOnly: the TCP status address refuses changes and
// requests under a foreign Host name, and serves the documents otherwise.
func TestStatusAddressReadOnly(t *testing.T) {
	a := startTestNode(t, "a", func(c *Config) {})
	do := func(method, host, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+a.cfg.HTTP+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, port, _ := net.SplitHostPort(a.cfg.HTTP)
	tests := []struct {
		name, method, host, path, body string
		code                           int
		want                           string
	}{
		{"members", "GET", a.cfg.HTTP, "/v1/members", "", 200, `"node": "a"`},
		{"localhost", "GET", "localhost:" + port, "/v1/health", "", 200, `"status": "ok"`},
		{"rebound name", "GET", "evil.example:" + port, "/v1/services", "", 403, "not this address, localhost or an IP literal"},
		{"announce", "POST", a.cfg.HTTP, "/v1/announce", `{"announce":"x:9=9"}`, 403, "read-only"},
		{"drain", "DELETE", a.cfg.HTTP, "/v1/announce/x", "", 403, "read-only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(tc.method, tc.host, tc.path, tc.body)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %q, want %d and a body containing %q", code, body, tc.code, tc.want)
			}
		})
	}
	if got := a.view().announces; len(got) != 0 {
		t.Fatalf("the status address changed the announcements: %v", got)
	}
}

// TestControlSocketFile: the socket's folder is made 0755 and the socket
// is 0666; a stale file (nothing answers) is replaced; a live one makes a
// second node fail to start with a clear error and stays; the socket goes
// away when the node stops.
func TestControlSocketFile(t *testing.T) {
	sock := shortSocketPath(t)

	// A stale socket: bound, never served, left behind.
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	a := startTestNode(t, "a", func(c *Config) { c.Socket = sock })
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("control socket: %v, %v; want a socket of mode 0666", fi.Mode(), err)
	}
	var h map[string]string
	if err := CallSocket(t.Context(), sock, "GET", "/v1/health", nil, &h); err != nil || h["node"] != "a" {
		t.Fatalf("health through the replaced stale socket: %v, %v", h, err)
	}
	fresh := filepath.Join(filepath.Dir(sock), "sub", "b.sock")
	b := startTestNode(t, "b", func(c *Config) { c.Socket = fresh })
	if di, err := os.Stat(filepath.Dir(fresh)); err != nil || di.Mode().Perm() != 0o755 {
		t.Fatalf("socket folder made by the node: %v, %v; want mode 0755", di.Mode(), err)
	}
	b.stop(t)
	if _, err := os.Lstat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after b stopped its socket is still there: %v", err)
	}

	// A second node on a's socket.
	cfg := a.cfg
	cfg.Node = "second"
	cfg.GossipPort, cfg.DataPort = freePort(t), freePort(t)
	cfg.HTTP = ""
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := n.Run(ctx); err == nil || !strings.Contains(err.Error(), "another process answers on it") {
		t.Fatalf("second node on %s: got %v, want a refusal to start", sock, err)
	}
	if err := CallSocket(t.Context(), sock, "GET", "/v1/health", nil, &h); err != nil || h["node"] != "a" {
		t.Fatalf("a's socket after the second node gave up: %v, %v; want a to answer", h, err)
	}
	a.stop(t)
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after a stopped its socket is still there: %v", err)
	}
}

// TestSocketDirChecked: a control socket folder that others could change
// (writable by group or others, a link, owned by another user) is refused
// with an error naming it, and a node does not start on it.
func TestSocketDirChecked(t *testing.T) {
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		return d
	}
	good := mk("good", 0o755)
	link := filepath.Join(base, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	euid := os.Geteuid()
	tests := []struct {
		dir  string
		euid int
		want string // "" = accepted
	}{
		{good, euid, ""},
		{mk("private", 0o700), euid, ""},
		{mk("world", 0o777), euid, "writable by others"},
		{mk("group", 0o775), euid, "writable by others"},
		{mk("sticky", 0o1777), euid, "writable by others"},
		{link, euid, "not a directory"},
		{file, euid, "not a directory"},
	}
	if euid == 0 {
		other := mk("other", 0o755)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		// Owned by uid 65534: refused for uid 1000, but root's own folder
		// is fine for any user.
		tests = append(tests, struct {
			dir  string
			euid int
			want string
		}{other, 1000, "belongs to uid 65534"}, struct {
			dir  string
			euid int
			want string
		}{good, 1000, ""})
	}
	for _, tc := range tests {
		err := checkSocketDir(tc.dir, tc.euid)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("checkSocketDir(%s, %d): %v, want accepted", tc.dir, tc.euid, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.dir)):
			t.Errorf("checkSocketDir(%s, %d): %v, want an error naming the folder and %q", tc.dir, tc.euid, err, tc.want)
		}
	}

	// A node with its socket in the world-writable folder does not start.
	cfg := DefaultConfig()
	cfg.Node = "n"
	cfg.Bind, cfg.NoMDNS, cfg.Profile, cfg.HTTP = "127.0.0.1", true, "local", ""
	cfg.GossipPort, cfg.DataPort = freePort(t), freePort(t)
	cfg.DrainTimeout = time.Second
	cfg.Socket = filepath.Join(base, "world", "ambassador.sock")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := n.Run(ctx); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("node with its socket in a 0777 folder: Run: %v, want a refusal", err)
	}
	if _, err := os.Lstat(cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket made in the refused folder: %v", err)
	}
}

// TestSocketLock: while another holds the socket's lock (a node checking
// for, removing and replacing a stale socket), listenSocket waits, so two
// nodes starting at once cannot both take a stale socket's place.
func TestSocketLock(t *testing.T) {
	sock := shortSocketPath(t)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		ln  net.Listener
		err error
	}
	got := make(chan res, 1)
	go func() {
		ln, _, err := listenSocket(sock)
		got <- res{ln, err}
	}()
	select {
	case r := <-got:
		if r.ln != nil {
			r.ln.Close()
		}
		unlock()
		t.Fatalf("listenSocket while another holds the lock: returned (%v), want it to wait", r.err)
	case <-time.After(500 * time.Millisecond):
	}
	unlock()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("listenSocket after the lock was released: %v", r.err)
		}
		r.ln.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("listenSocket still waiting 10s after the lock was released")
	}
	if fi, err := os.Lstat(sock + ".lock"); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("lock file: %v, %v; want it kept", fi, err)
	}
}

// TestControlSocketConnCap: with maxControlConns connections open (each
// served once and kept alive), the control socket serves no further one
// until one of them closes.
func TestControlSocketConnCap(t *testing.T) {
	n := startTestNode(t, "a", func(*Config) {})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range maxControlConns {
		c, err := net.Dial("unix", n.cfg.Socket)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var h map[string]string
	if err := CallSocket(ctx, n.cfg.Socket, "GET", "/v1/health", nil, &h); err == nil {
		t.Fatalf("request with %d connections open: served, want it to wait for a free slot", maxControlConns)
	}
	held[0].Close()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	if err := CallSocket(ctx2, n.cfg.Socket, "GET", "/v1/health", nil, &h); err != nil {
		t.Fatalf("request after one connection closed: %v", err)
	}
}
