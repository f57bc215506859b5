package creds

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxHeaderBytes bounds one request's header, as http.Server's default
// MaxHeaderBytes does (plus bufio's slack). http.ReadRequest has no bound
// of its own.
const maxHeaderBytes = 1<<20 + 4096

var (
	errHeaderTooLarge = errors.New("request header too large")
	errHTTP2          = errors.New("HTTP/2 prior knowledge is not supported")
)

func basicAuth(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// httpHandshake does no I/O: it wraps the client conn so that every request
// read from it carries authz in its Authorization header. The backend conn
// and the backend→client direction stay raw.
func httpHandshake(authz string) handshake {
	return func(_ context.Context, client, backend net.Conn) (net.Conn, net.Conn, error) {
		return newHTTPConn(client, authz), backend, nil
	}
}

// closeWriter and closeReader are how the copy loop half-closes a conn.
type (
	closeWriter interface{ CloseWrite() error }
	closeReader interface{ CloseRead() error }
)

// httpConn is the client conn as the copy loop sees it. Read returns the
// client's requests rewritten by a goroutine (run) that parses them with
// http.ReadRequest, sets Authorization and writes them with Request.Write
// into a pipe (net.Pipe, for its read deadline). Write, ReadFrom, CloseWrite, addresses and write
// deadlines go straight to the client conn. A read deadline bounds Read on
// the pipe, as on a net.Conn, and not the goroutine's reads from the
// client: the copy loop sets one for its idle and half-close timeouts and,
// when it passes while the other direction still moves bytes, moves it on
// and reads again. Were it set on the client conn, the goroutine would die
// at the first timeout, and with it every later request.
//
// The goroutine is owned by httpConn and ends when the client's stream
// ends (EOF: Read then returns io.EOF, so the copy toward the backend ends
// and passes the half-close on), when the client conn fails, or when Close
// or CloseRead is called. Close waits for it.
//
// After a request with "Connection: Upgrade", or a CONNECT, the rest of
// the client's stream passes through unchanged: it is no longer HTTP, even
// if the server refuses the upgrade.
//
// Request.Write normalises what it writes: the request line keeps the
// client's HTTP/1.0 or 1.1 (see http10Writer), header order and case may
// change, and a chunked body is re-chunked. No header is added except
// Authorization (an absent User-Agent stays absent), and, on an HTTP/1.0
// request without keep-alive, "Connection: close", which says what 1.0
// means anyway.
type httpConn struct {
	net.Conn // the client conn
	authz    string
	pr       net.Conn // Read's end of a net.Pipe, whose other end run writes
	runErr   error    // why run ended; written before run's end is closed, read after Read's EOF

	wg     sync.WaitGroup // the run goroutine
	closed atomic.Bool
}

// httpConnCR is an httpConn whose client conn can half-close its read side.
type httpConnCR struct{ *httpConn }

// Interface guards: the copy loop half-closes through these.
var (
	_ closeWriter   = (*httpConn)(nil)
	_ io.ReaderFrom = (*httpConn)(nil)
	_ closeReader   = httpConnCR{}
)

// newHTTPConn starts the rewriting goroutine. The result implements
// CloseRead only if client does.
func newHTTPConn(client net.Conn, authz string) net.Conn {
	pr, pw := net.Pipe()
	c := &httpConn{Conn: client, authz: authz, pr: pr}
	c.wg.Go(func() {
		c.runErr = c.run(pw)
		_ = pw.Close() // Read returns io.EOF, then runErr in its place
	})
	if _, ok := client.(closeReader); ok {
		return httpConnCR{c}
	}
	return c
}

// Read returns the rewritten request stream. After Close or CloseRead it
// returns an error matching net.ErrClosed.
func (c *httpConn) Read(p []byte) (int, error) {
	n, err := c.pr.Read(p)
	switch {
	case err == io.EOF && c.runErr != nil:
		err = c.runErr // run failed: a cut, not a clean end
	case errors.Is(err, io.ErrClosedPipe):
		err = net.ErrClosed // our own Close or CloseRead
	}
	return n, err
}

// SetReadDeadline bounds Read, not the goroutine's reads from the client
// (see httpConn).
func (c *httpConn) SetReadDeadline(t time.Time) error { return c.pr.SetReadDeadline(t) }

// SetDeadline sets Read's deadline and the client conn's write deadline.
func (c *httpConn) SetDeadline(t time.Time) error {
	_ = c.pr.SetReadDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

// ReadFrom lets io.Copy(c, backend) reach the client's own ReadFrom, so the
// backend→client direction keeps splice(2).
func (c *httpConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite half-closes the client conn: the server has nothing more.
func (c *httpConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("creds: http: close write: %T cannot half-close: %w", c.Conn, errors.ErrUnsupported)
}

// CloseRead stops reading from the client: the rewriting goroutine's next
// write to the pipe fails and its next read returns EOF.
func (c httpConnCR) CloseRead() error {
	_ = c.pr.Close()
	return c.Conn.(closeReader).CloseRead()
}

// Close closes the client conn and waits for the rewriting goroutine. It is
// safe to call more than once and concurrently; later calls return an error
// matching net.ErrClosed.
func (c *httpConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("creds: http: close: %w", net.ErrClosed)
	}
	_ = c.pr.Close()      // unblocks run's writes
	err := c.Conn.Close() // unblocks run's reads
	c.wg.Wait()
	return err
}

// run rewrites requests from the client into pw until the client's stream
// ends. It returns nil on a clean EOF between requests.
func (c *httpConn) run(pw io.Writer) error {
	lr := &headerLimit{r: c.Conn}
	br := bufio.NewReader(lr)
	// Request.Write writes to an io.ByteWriter (byteWriter over bw) as is;
	// flushBody flushes the header before the body is read, so a client
	// waiting for "100 Continue" is not stuck.
	bw := bufio.NewWriter(pw)
	for {
		lr.n = maxHeaderBytes
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the client is done: hand the EOF on
			}
			return fmt.Errorf("creds: http: read request: %w", err)
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return fmt.Errorf("creds: http: read request: %w", err)
		}
		lr.n = math.MaxInt64 // bodies are not bounded
		if req.ProtoMajor != 1 {
			return fmt.Errorf("creds: http: %w", errHTTP2)
		}
		passThrough := req.Method == http.MethodConnect || hasToken(req.Header["Connection"], "upgrade")
		if strings.EqualFold(req.Method, http.MethodTrace) {
			// A server answers TRACE with the request it received, so the
			// credential would come back to the application, which must
			// never hold it (RFC 9110 9.3.8: no credentials in a TRACE).
			// The request goes on without any Authorization. EqualFold:
			// some servers take the method in any case.
			req.Header.Del("Authorization")
		} else {
			req.Header.Set("Authorization", c.authz)
		}
		if _, ok := req.Header["User-Agent"]; !ok {
			req.Header["User-Agent"] = []string{""} // Write would add Go's
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = &flushBody{ReadCloser: req.Body, bw: bw}
		}
		// Request.Write always says HTTP/1.1; an HTTP/1.0 client's request
		// must stay 1.0, or the server may answer with chunked encoding,
		// which such a client cannot read.
		// Not bw itself: given a *bufio.Writer, Request.Write copies a
		// Content-Length body with bw.ReadFrom, which reads into bw's
		// buffer at the offset it had before the read, while flushBody's
		// flush inside that read moves the offset back to 0: every read
		// after the first would send stale bytes. byteWriter has no
		// ReadFrom, so the body is copied through a buffer of its own.
		var w io.Writer = byteWriter{bw}
		if req.ProtoMinor == 0 {
			w = &http10Writer{bw: bw, dropHost: req.Host == ""}
		}
		if err := req.Write(w); err != nil {
			return fmt.Errorf("creds: http: forward %s request: %w", req.Method, err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("creds: http: forward %s request: %w", req.Method, err)
		}
		if passThrough {
			if _, err := br.WriteTo(pw); err != nil {
				return fmt.Errorf("creds: http: pass through after %s: %w", req.Method, err)
			}
			return nil
		}
	}
}

// http10Writer passes a request written by Request.Write on to bw with
// "HTTP/1.1" at the end of its first line turned into "HTTP/1.0", and, with
// dropHost, without the empty "Host:" line that Request.Write adds when an
// HTTP/1.0 client sent none (some servers refuse an empty Host, none
// refuses a missing one on 1.0). It is an io.ByteWriter, so Request.Write
// writes to it directly, without a buffer of its own that would hold back a
// streamed body (flushBody flushes bw).
type http10Writer struct {
	bw       *bufio.Writer
	dropHost bool
	line     []byte // the header line so far, until its CRLF
	first    bool   // the request line went out
	done     bool   // the header went out: pass bytes through
}

func (w *http10Writer) Write(p []byte) (int, error) {
	for i, b := range p {
		if w.done {
			n, err := w.bw.Write(p[i:])
			return i + n, err
		}
		if err := w.WriteByte(b); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

func (w *http10Writer) WriteByte(b byte) error {
	if w.done {
		return w.bw.WriteByte(b)
	}
	w.line = append(w.line, b)
	if !bytes.HasSuffix(w.line, []byte("\r\n")) {
		return nil
	}
	line := w.line
	w.line = w.line[:0]
	switch {
	case !w.first:
		w.first = true
		rest, ok := bytes.CutSuffix(line, []byte(" HTTP/1.1\r\n"))
		if !ok {
			return errors.New("creds: http: request line does not end in HTTP/1.1")
		}
		_, err := fmt.Fprintf(w.bw, "%s HTTP/1.0\r\n", rest)
		return err
	case string(line) == "\r\n":
		w.done = true
	case w.dropHost && string(line) == "Host: \r\n":
		return nil
	}
	_, err := w.bw.Write(line)
	return err
}

// hasToken reports whether a comma-separated header such as Connection
// holds token, case-insensitively.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// byteWriter is a *bufio.Writer without its ReadFrom (see run). It is an
// io.ByteWriter, so Request.Write writes to it directly.
type byteWriter struct{ bw *bufio.Writer }

func (w byteWriter) Write(p []byte) (int, error) { return w.bw.Write(p) }
func (w byteWriter) WriteByte(b byte) error      { return w.bw.WriteByte(b) }

// flushBody flushes what is already written of a request before each read
// of its body, so nothing sits in our buffer while we wait for the client
// (a slow or streaming upload).
type flushBody struct {
	io.ReadCloser
	bw *bufio.Writer
}

func (b *flushBody) Read(p []byte) (int, error) {
	if b.bw.Buffered() > 0 {
		if err := b.bw.Flush(); err != nil {
			return 0, err
		}
	}
	return b.ReadCloser.Read(p)
}

// headerLimit is an io.Reader that fails once n bytes were read; run sets n
// before each request header and lifts it for the body.
type headerLimit struct {
	r io.Reader
	n int64
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	p = p[:min(int64(len(p)), l.n)]
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
