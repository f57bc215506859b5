package creds

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// servedHTTP is what serveHTTPAsync's server read, and how it ended.
type servedHTTP struct {
	seen []seenRequest
	err  error
}

// serveHTTPAsync runs serveHTTP on conn in a goroutine; its result
// arrives on the returned channel (buffer 1) when conn's stream ends.
func serveHTTPAsync(conn *net.TCPConn) <-chan servedHTTP {
	served := make(chan servedHTTP, 1)
	go func() {
		seen, err := serveHTTP(conn)
		served <- servedHTTP{seen, err}
	}()
	return served
}

// seenRequest is what the fake HTTP server records per request.
type seenRequest struct {
	method, path string
	proto        string
	authz        []string
	userAgent    []string
	body         string
}

// serveHTTP answers every request on conn with "ok" until the client's
// stream ends (io.EOF between requests), then half-closes. It records the
// requests; err is non-nil if the stream did not end cleanly.
func serveHTTP(conn *net.TCPConn) ([]seenRequest, error) {
	br := bufio.NewReader(conn)
	var seen []seenRequest
	for {
		req, err := http.ReadRequest(br)
		if errors.Is(err, io.EOF) {
			return seen, conn.CloseWrite()
		}
		if err != nil {
			return seen, err
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return seen, err
		}
		seen = append(seen, seenRequest{req.Method, req.URL.Path, req.Proto, req.Header.Values("Authorization"), req.Header.Values("User-Agent"), string(body)})
		if _, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return seen, err
		}
	}
}

func TestHTTPKeepAlive(t *testing.T) {
	tests := []struct {
		name, proto string
		secret      Secret
		want        string
	}{
		{"basic", "http-basic", Secret{User: "app", Password: secretText}, "Basic " + basicAuth("app", secretText)},
		{"bearer", "http-bearer", Secret{Token: secretText}, "Bearer " + secretText},
	}
	// Pipelined: all three requests at once, so the rewriter must cope with
	// requests that are already buffered behind the one it is reading.
	requests := "POST /a HTTP/1.1\r\nHost: svc\r\nAuthorization: Basic b2xkOm9sZA==\r\nauthorization: Bearer old\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /b HTTP/1.1\r\nHost: svc\r\nUser-Agent: curl/8\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: svc\r\n\r\n" +
		// An HTTP/1.0 client's requests stay 1.0, or the server could
		// answer in chunked encoding, which the client cannot read.
		"POST /d HTTP/1.0\r\nHost: svc\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nxyz" +
		"GET /e HTTP/1.0\r\n\r\n"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newSetup(t)
			h, err := New(tc.proto, tc.secret)
			if err != nil {
				t.Fatal(err)
			}
			served := serveHTTPAsync(st.server)
			c, b, err := h(testCtx(t), st.client, st.backend)
			if err != nil {
				t.Fatal(err)
			}
			if b != st.backend {
				t.Error("backend conn was wrapped; it must stay raw")
			}
			if _, ok := c.(closeWriter); !ok {
				t.Errorf("wrapped client %T has no CloseWrite", c)
			}
			if _, ok := c.(closeReader); !ok {
				t.Errorf("wrapped client %T has no CloseRead although *net.TCPConn does", c)
			}
			copyBoth(t, c, b)
			if _, err := io.WriteString(st.app, requests); err != nil {
				t.Fatal(err)
			}
			st.app.CloseWrite() // after its last request: must reach the server as EOF
			got := string(readAllTimeout(t, st.app))
			if want := strings.Repeat("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 5); got != want {
				t.Errorf("app got %q, want %q", got, want)
			}
			r := <-served
			if r.err != nil {
				t.Fatalf("fake server: %v", r.err)
			}
			want := []seenRequest{
				{"POST", "/a", "HTTP/1.1", []string{tc.want}, nil, "hello"},
				{"POST", "/b", "HTTP/1.1", []string{tc.want}, []string{"curl/8"}, "abcdefg"},
				{"GET", "/c", "HTTP/1.1", []string{tc.want}, nil, ""},
				{"POST", "/d", "HTTP/1.0", []string{tc.want}, nil, "xyz"},
				{"GET", "/e", "HTTP/1.0", []string{tc.want}, nil, ""},
			}
			if fmt.Sprint(r.seen) != fmt.Sprint(want) {
				t.Errorf("server saw %q, want %q", r.seen, want)
			}
		})
	}
}

func TestHTTPPassThrough(t *testing.T) {
	tests := []struct{ name, request string }{
		{"upgrade", "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"connect", "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n"},
	}
	const raw = "\x00\x01RAW bytes\r\nGET /not-parsed HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newSetup(t)
			h, err := New("http-bearer", Secret{Token: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() {
				served <- func() error {
					br := bufio.NewReader(st.server)
					req, err := http.ReadRequest(br)
					if err != nil {
						return err
					}
					if got := req.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer tok" {
						return fmt.Errorf("authorization = %q, want [Bearer tok]", got)
					}
					if _, err := io.WriteString(st.server, "HTTP/1.1 101 Switching Protocols\r\n\r\n"); err != nil {
						return err
					}
					rest, err := io.ReadAll(br)
					if err != nil {
						return err
					}
					if string(rest) != raw {
						return fmt.Errorf("after %s the server got %q, want %q unchanged", req.Method, rest, raw)
					}
					return st.server.CloseWrite()
				}()
			}()
			c, b, err := h(testCtx(t), st.client, st.backend)
			if err != nil {
				t.Fatal(err)
			}
			copyBoth(t, c, b)
			if _, err := io.WriteString(st.app, tc.request+raw); err != nil {
				t.Fatal(err)
			}
			st.app.CloseWrite()
			if got := string(readAllTimeout(t, st.app)); got != "HTTP/1.1 101 Switching Protocols\r\n\r\n" {
				t.Errorf("app got %q", got)
			}
			if err := <-served; err != nil {
				t.Errorf("fake server: %v", err)
			}
		})
	}
}

// TestHTTPClose checks the stop path: Close on an idle connection ends the
// rewriting goroutine (Close waits for it) and a second Close reports
// net.ErrClosed.
func TestHTTPClose(t *testing.T) {
	st := newSetup(t)
	h, err := New("http-bearer", Secret{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := h(testCtx(t), st.client, st.backend)
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("first Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the rewriting goroutine did not stop")
	}
	if err := <-readErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read during Close = %v, want net.ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
}

// rewriter returns the request rewriter (bearer "tok") over a net.Pipe
// whose client side writes in and then ends; both are closed in Cleanup.
func rewriter(t *testing.T, in string) net.Conn {
	t.Helper()
	client, app := net.Pipe()
	t.Cleanup(func() { app.Close() })
	c := newHTTPConn(client, "Bearer tok")
	t.Cleanup(func() { c.Close() })
	go func() {
		_, _ = io.WriteString(app, in)
		app.Close()
	}()
	return c
}

func TestHTTPBadRequests(t *testing.T) {
	tests := []struct {
		name, in string
		is       error
	}{
		{"header too large", "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 2*maxHeaderBytes), errHeaderTooLarge},
		{"http2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", errHTTP2},
		{"garbage", "\x16\x03\x01 not http\r\n\r\n", nil},
		{"truncated body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := rewriter(t, tc.in)
			if _, ok := c.(closeReader); ok {
				t.Error("wrapper has CloseRead although net.Pipe does not")
			}
			_, err := io.Copy(io.Discard, c)
			if err == nil {
				t.Fatal("rewritten stream ended cleanly, want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error = %v, want %v", err, tc.is)
			}
		})
	}
}

// FuzzHTTPRewrite feeds arbitrary client bytes through the rewriter: it
// must neither panic nor hang, and Close must stop it.
func FuzzHTTPRewrite(f *testing.F) {
	f.Add("POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n")
	f.Add("POST /b HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
	f.Add("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n\r\nraw")
	f.Add("POST /old HTTP/1.0\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.0\r\n\r\n")
	f.Add("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		client, app := net.Pipe()
		defer app.Close()
		c := newHTTPConn(client, "Bearer tok")
		go func() {
			_, _ = io.WriteString(app, in)
			app.Close()
		}()
		_, _ = io.Copy(io.Discard, c)
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Close: %v", err)
		}
	})
}

// TestHTTP10Raw checks the bytes an HTTP/1.0 request reaches the server
// as: still 1.0, with the Authorization header, and without the empty Host
// line Request.Write would add for a client that sent none.
func TestHTTP10Raw(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"no host", "GET /e HTTP/1.0\r\n\r\n", "GET /e HTTP/1.0\r\nConnection: close\r\nAuthorization: Bearer " + secretText + "\r\n\r\n"},
		{"host", "GET /e HTTP/1.0\r\nHost: svc\r\n\r\n", "GET /e HTTP/1.0\r\nHost: svc\r\nConnection: close\r\nAuthorization: Bearer " + secretText + "\r\n\r\n"},
		{"keep-alive with a body", "POST /d HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nxyz",
			"POST /d HTTP/1.0\r\nContent-Length: 3\r\nAuthorization: Bearer " + secretText + "\r\nConnection: keep-alive\r\n\r\nxyz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newSetup(t)
			h, err := New("http-bearer", Secret{Token: secretText})
			if err != nil {
				t.Fatal(err)
			}
			c, b, err := h(testCtx(t), st.client, st.backend)
			if err != nil {
				t.Fatal(err)
			}
			copyBoth(t, c, b)
			if _, err := io.WriteString(st.app, tc.in); err != nil {
				t.Fatal(err)
			}
			st.app.CloseWrite()
			if got := string(readAllTimeout(t, st.server)); got != tc.want {
				t.Errorf("server got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHTTPTraceNoCredential: a server answers TRACE by echoing the request
// it got, headers included, so a TRACE with the injected Authorization
// would hand the application the very secret it is not meant to have
// (RFC 9110 9.3.8: a client must not send credentials in a TRACE). Such a
// request goes on without any Authorization; other requests on the same
// connection still get it.
func TestHTTPTraceNoCredential(t *testing.T) {
	tests := []struct {
		name, request string
		wantAuthz     []string
	}{
		{"trace", "TRACE / HTTP/1.1\r\nHost: svc\r\n\r\n", nil},
		{"trace with the client's own header", "TRACE /x HTTP/1.1\r\nHost: svc\r\nAuthorization: Basic b2xkOm9sZA==\r\n\r\n", nil},
		{"trace in lower case", "trace /y HTTP/1.1\r\nHost: svc\r\n\r\n", nil},
		{"trace over HTTP/1.0", "TRACE /z HTTP/1.0\r\n\r\n", nil},
		{"get", "GET /c HTTP/1.1\r\nHost: svc\r\n\r\n", []string{"Bearer tok"}},
		{"options", "OPTIONS * HTTP/1.1\r\nHost: svc\r\n\r\n", []string{"Bearer tok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A GET after it: the credential is withheld from the TRACE only.
			c := rewriter(t, tc.request+"GET /after HTTP/1.1\r\nHost: svc\r\n\r\n")
			out, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("rewritten stream: %v", err)
			}
			br := bufio.NewReader(strings.NewReader(string(out)))
			req, err := http.ReadRequest(br)
			if err != nil {
				t.Fatalf("reading the rewritten request from %q: %v", out, err)
			}
			if got := req.Header.Values("Authorization"); fmt.Sprint(got) != fmt.Sprint(tc.wantAuthz) {
				t.Errorf("%s %s reached the server with Authorization %q, want %q", req.Method, req.URL, got, tc.wantAuthz)
			}
			next, err := http.ReadRequest(br)
			if err != nil {
				t.Fatalf("reading the request after it: %v", err)
			}
			if got := next.Header.Values("Authorization"); fmt.Sprint(got) != "[Bearer tok]" {
				t.Errorf("GET after it reached the server with Authorization %q, want [Bearer tok]", got)
			}
		})
	}
}

// TestHTTPSlowBody: a request body that arrives in several reads (a slow
// or streaming upload) reaches the server as the client sent it.
func TestHTTPSlowBody(t *testing.T) {
	tests := []struct {
		name          string
		first, second string // written with a pause between
		want          string // the body the server reads
	}{
		{"content-length", "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 6\r\n\r\nabc", "def", "abcdef"},
		{"content-length 1.0", "POST /a HTTP/1.0\r\nContent-Length: 6\r\n\r\nabc", "def", "abcdef"},
		{"chunked", "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "3\r\ndef\r\n0\r\n\r\n", "abcdef"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newSetup(t)
			h, err := New("http-bearer", Secret{Token: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			served := serveHTTPAsync(st.server)
			client, backend, err := h(testCtx(t), st.client, st.backend)
			if err != nil {
				t.Fatal(err)
			}
			copyBoth(t, client, backend)
			if _, err := io.WriteString(st.app, tc.first); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the first part is read on its own
			if _, err := io.WriteString(st.app, tc.second); err != nil {
				t.Fatal(err)
			}
			if err := st.app.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			readAllTimeout(t, st.app)
			r := <-served
			if r.err != nil {
				t.Fatalf("server: %v", r.err)
			}
			if len(r.seen) != 1 || r.seen[0].body != tc.want {
				t.Fatalf("server read %+v, want one request with body %q", r.seen, tc.want)
			}
		})
	}
}

// TestHTTPReadDeadline: a read deadline on the rewriter behaves as on a
// net.Conn. The copy loop sets one for --idle-timeout and
// --half-close-timeout; when it passes while the other direction is busy
// (a long download), the loop moves it on and reads again. The rewriter
// must then still pass the client's next request (and the rest of a body)
// on, not fail every later Read with the old timeout.
func TestHTTPReadDeadline(t *testing.T) {
	tests := []struct {
		name          string
		before, after string // the app sends before first the deadline passes, and after
		want          string // what the server must then read, in order
	}{
		{
			name:   "between requests",
			before: "GET /a HTTP/1.1\r\nHost: svc\r\n\r\n",
			after:  "GET /b HTTP/1.1\r\nHost: svc\r\n\r\n",
			want:   "GET /a GET /b",
		},
		{
			name:   "mid body",
			before: "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 6\r\n\r\nabc",
			after:  "defGET /b HTTP/1.1\r\nHost: svc\r\n\r\n",
			want:   "POST /a abcdef GET /b",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newSetup(t)
			c := newHTTPConn(st.client, "Bearer tok")
			t.Cleanup(func() { c.Close() })
			// What the copy loop does: read into the backend conn.
			copied := make(chan error, 1) // the first Read error
			var (
				mu  sync.Mutex
				got strings.Builder
			)
			pr, pw := io.Pipe()
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					_, _ = pw.Write(buf[:n])
					if err != nil {
						select {
						case copied <- err:
						default:
						}
					}
					if errors.Is(err, os.ErrDeadlineExceeded) {
						// timedOut: traffic the other way, move it on.
						_ = c.SetReadDeadline(time.Time{})
						continue
					}
					if err != nil {
						pw.CloseWithError(err)
						return
					}
				}
			}()
			go func() {
				br := bufio.NewReader(pr)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(req.Body)
					mu.Lock()
					fmt.Fprintf(&got, "%s %s ", req.Method, req.URL.Path)
					if len(body) > 0 {
						fmt.Fprintf(&got, "%s ", body)
					}
					mu.Unlock()
					if req.URL.Path == "/b" {
						pr.Close()
						return
					}
				}
			}()
			read := func() string {
				mu.Lock()
				defer mu.Unlock()
				return strings.TrimSpace(got.String())
			}
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := io.WriteString(st.app, tc.before); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-copied:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("Read at its deadline = %v, want os.ErrDeadlineExceeded", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Read did not return at its deadline")
			}
			if _, err := io.WriteString(st.app, tc.after); err != nil {
				t.Fatal(err)
			}
			waitUntil := time.Now().Add(5 * time.Second)
			for time.Now().Before(waitUntil) && read() != tc.want {
				time.Sleep(10 * time.Millisecond)
			}
			if g := read(); g != tc.want {
				t.Errorf("server read %q, want %q: the rewriter died at the read deadline", g, tc.want)
			}
		})
	}
}
