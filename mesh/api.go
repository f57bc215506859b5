package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/listennet"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// The node's local API has two doors:
//
//   - The TCP status address (Config.HTTP) serves read-only documents
//     (readOnlyRoutes) to anyone who can reach it, but only under a Host
//     name that DNS rebinding cannot forge (hostAllowed), so a web page
//     that rebinds its own name to 127.0.0.1 cannot read it.
//   - The control socket (Config.Socket), a Unix socket, serves the same
//     documents and the endpoints that change the node (controlRoutes).
//     Those answer only root and the user the node runs as, by the
//     kernel's word on who is calling (socketPeerUID), not by anything the
//     caller sends. The socket file is mode 0666 on purpose: the
//     credential check is what authorises, and other users must be able
//     to connect to hear a clear refusal rather than "permission denied".
//
// An announcement names an address that peers will connect to with their
// credentials (a Redis password, a bearer token); so only the node's
// operator may change what the node announces.

// SystemSocket is the control socket of a node run by root.
const SystemSocket = "/run/ambassador/ambassador.sock"

// DefaultSocket is where a node run by euid keeps its control socket:
// SystemSocket for root, else ambassador/ambassador.sock under xdgRuntime
// ($XDG_RUNTIME_DIR, a folder private to the user). Without either it
// returns an error that says what to do.
func DefaultSocket(euid int, xdgRuntime string) (string, error) {
	if euid == 0 {
		return SystemSocket, nil
	}
	if xdgRuntime == "" || !filepath.IsAbs(xdgRuntime) {
		return "", fmt.Errorf("no place for the control socket: not root, and XDG_RUNTIME_DIR is not set; give --socket PATH (or --socket \"\" for no control socket)")
	}
	return filepath.Join(xdgRuntime, "ambassador", "ambassador.sock"), nil
}

// SocketCandidates lists where a client run by euid looks for a node's
// control socket, in order: its own user's default, then the system's.
func SocketCandidates(euid int, xdgRuntime string) []string {
	var out []string
	if p, err := DefaultSocket(euid, xdgRuntime); err == nil && p != SystemSocket {
		out = append(out, p)
	}
	return append(out, SystemSocket)
}

// localAPI is the node's two HTTP servers and what they need to decide who
// may do what.
type localAPI struct {
	log  *slog.Logger
	uid  uint32                         // the node's effective uid: root and it may change the node
	peer func(net.Conn) (uint32, error) // who is at the other end of a socket connection; a seam for tests
	wg   sync.WaitGroup                 // the Serve goroutines

	srvs     []*http.Server
	sockPath string      // "" = no control socket
	sockFile os.FileInfo // the socket file we made, so that we remove only that one
}

// startAPI opens the status address and the control socket, whichever are
// configured, and serves them until stopAPI. On error nothing is left open.
func (n *Node) startAPI() (err error) {
	a := &n.api
	a.log = n.log
	a.uid = uint32(os.Geteuid())
	a.peer = n.cfg.peerUID
	if a.peer == nil {
		a.peer = socketPeerUID
	}
	defer func() {
		if err != nil {
			_ = n.stopAPI(context.Background())
		}
	}()
	if n.cfg.HTTP != "" {
		addr, _ := ParseAddr(n.cfg.HTTP, "127.0.0.1") // validated in Config.Validate
		ln, err := net.Listen(listennet.Network("tcp", addr), addr)
		if err != nil {
			return fmt.Errorf("mesh: status api: %w", err)
		}
		mux := http.NewServeMux()
		n.readOnlyRoutes(mux)
		// Say where changes went, rather than a bare 404 or 405.
		mux.HandleFunc("POST /v1/announce", a.moved)
		mux.HandleFunc("DELETE /v1/announce/{name}", a.moved)
		// Bounded like the control socket: anyone who reaches it may
		// connect, and an event stream lasts as long as its client likes.
		a.serve(newLimitListener(ln, maxControlConns), hostGuard([]string{addr, ln.Addr().String(), n.cfg.HTTP}, mux), nil)
	}
	if n.cfg.Socket != "" {
		ln, fi, err := listenSocket(n.cfg.Socket)
		if err != nil {
			return fmt.Errorf("mesh: control socket: %w", err)
		}
		a.sockPath, a.sockFile = n.cfg.Socket, fi
		mux := http.NewServeMux()
		n.readOnlyRoutes(mux)
		n.controlRoutes(mux, a.operatorOnly)
		ll := newLimitListener(ln, maxControlConns)
		ll.others = make(chan struct{}, maxControlConns-operatorConns)
		ll.cred = func(c net.Conn) (peerCred, bool) {
			uid, err := a.peer(c)
			return peerCred{uid: uid, err: err}, callerAllowed(uid, err, a.uid) == nil
		}
		a.serve(ll, mux, func(ctx context.Context, c net.Conn) context.Context {
			p := peerCred{err: errors.New("no credentials read")}
			if lc, ok := c.(*limitConn); ok {
				p = lc.cred
			}
			return context.WithValue(ctx, peerKey{}, p)
		})
	}
	return nil
}

// maxControlConns bounds the connections the control socket serves at
// once: the socket is open to every local user (mode 0666), and none of
// them should be able to pile up connections without limit. Further ones
// wait in the kernel's backlog until a slot frees. operatorConns of them
// are kept for root and the node's user: users who may not change the
// node share the rest, and one beyond that is closed at once, or a user
// holding maxControlConns read-only streams (GET /v1/events never ends)
// would keep the operator out.
const (
	maxControlConns = 64
	operatorConns   = 8
)

// apiIdleTimeout closes a keep-alive connection to the local API that
// sends no request for this long.
const apiIdleTimeout = 30 * time.Second

// apiBodyWait bounds how long a request's body may take to arrive, from
// when its headers did. The local API's bodies are a few hundred bytes.
const apiBodyWait = 5 * time.Second

// bodyDeadline gives a request that has a body apiBodyWait to send it.
// ReadHeaderTimeout covers only the headers and IdleTimeout only the wait
// between requests, and net/http reads an unread body to its end after
// the handler, before it answers: without a deadline a client that
// promised a body and sent none held its connection, and a control
// socket slot (any local user may connect), for as long as it liked. Not
// http.Server.ReadTimeout: it would also end the /v1/events stream,
// whose request has no body, once it expired.
func bodyDeadline(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(apiBodyWait))
		}
		h.ServeHTTP(w, r)
	})
}

func (a *localAPI) serve(ln net.Listener, h http.Handler, connCtx func(context.Context, net.Conn) context.Context) {
	srv := &http.Server{Handler: bodyDeadline(h), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: apiIdleTimeout, ConnContext: connCtx}
	a.srvs = append(a.srvs, srv)
	// Not in n.wg: that group is the loops', which stop before the local
	// API does; this goroutine ends when Shutdown closes ln.
	a.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			a.log.Error("local api stopped", "listen", ln.Addr().String(), "err", err)
		}
	})
}

// limitListener accepts at most cap(sem) connections at once: Accept
// waits for one of them to close (or the listener to close) first. With
// cred set, connections whose caller it does not trust (its bool result)
// also take a slot of others, and one that finds others full is closed.
type limitListener struct {
	net.Listener
	sem    chan struct{}
	others chan struct{}                   // nil without cred
	cred   func(net.Conn) (peerCred, bool) // who calls, and may they change the node; nil: not asked
	closed chan struct{}
	once   sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		lc := &limitConn{Conn: c, release: func() { <-l.sem }}
		if l.cred == nil {
			return lc, nil
		}
		var trusted bool
		lc.cred, trusted = l.cred(c) // on the *net.UnixConn: SO_PEERCRED wants it
		if trusted {
			return lc, nil
		}
		select {
		case l.others <- struct{}{}:
			lc.release = func() { <-l.others; <-l.sem }
			return lc, nil
		default:
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			_ = c.Close()
		}
	}
}

// Close also ends an Accept waiting for a free slot, so that Serve
// returns at Shutdown even with every slot taken.
func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitConn gives its slot back on the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
	cred    peerCred // the caller, read at Accept (limitListener.cred)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// stopAPI stops both servers, waits for their goroutines and removes the
// control socket, if it is still the file this node made.
func (n *Node) stopAPI(ctx context.Context) error {
	a := &n.api
	var errs []error
	for _, srv := range a.srvs {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.wg.Wait()
	a.srvs = nil
	if a.sockPath != "" {
		// Another node may have replaced a file we thought stale; only
		// ours goes, and the lock keeps it from doing so in between.
		if unlock, err := lockSocket(a.sockPath); err != nil {
			errs = append(errs, err)
		} else {
			if fi, err := os.Lstat(a.sockPath); err == nil && os.SameFile(fi, a.sockFile) {
				if err := os.Remove(a.sockPath); err != nil {
					errs = append(errs, fmt.Errorf("remove control socket: %w", err))
				}
			}
			unlock()
		}
		a.sockPath = ""
	}
	return errors.Join(errs...)
}

// listenSocket listens on a Unix socket at path, making its folder (0755)
// if needed. The folder must be one nobody but this node's user and root
// can change (checkSocketDir): whoever can write it could swap the socket
// for their own, or for a link. A socket file left behind by a node that
// died is removed, but only when nothing answers on it: a second node on
// the same path fails here instead of taking the first one's socket away.
func listenSocket(path string) (net.Listener, os.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	if err := checkSocketDir(dir, os.Geteuid()); err != nil {
		return nil, nil, err
	}
	unlock, err := lockSocket(path)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	ln, err := listenUnix0666(path)
	if errors.Is(err, syscall.EADDRINUSE) {
		if err := removeStaleSocket(path); err != nil {
			return nil, nil, err
		}
		ln, err = listenUnix0666(path)
	}
	if err != nil {
		return nil, nil, err
	}
	// The listener would unlink path on Close even if another node's
	// socket has replaced ours by then; stopAPI removes only our own.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		_ = os.Remove(path)
		return nil, nil, err
	}
	return ln, fi, nil
}

// removeStaleSocket removes the socket file at path if no process answers
// on it, and refuses otherwise.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; not touching it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process answers on it (is a node already running? give this one its own --socket)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s is in use and cannot be checked: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	return nil
}

// controlRoutes registers the endpoints that change the node. They are
// served on the control socket only, each behind guard.
func (n *Node) controlRoutes(mux *http.ServeMux, guard func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("POST /v1/announce", guard(func(w http.ResponseWriter, r *http.Request) {
		var req AnnounceRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
			return
		}
		a, err := ParseAnnounce(req.Announce)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err := n.Announce(a); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, AnnounceRequest{Announce: a.String()})
	}))
	mux.HandleFunc("DELETE /v1/announce/{name}", guard(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		sn, err := svcname.Parse(name)
		if err != nil {
			err = fmt.Errorf("mesh: withdraw: %w", err)
		} else {
			err = n.Withdraw(sn)
		}
		if err != nil {
			writeError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, map[string]string{"withdrawn": name})
	}))
}

// peerKey is the context key of a socket connection's peerCred.
type peerKey struct{}

// peerCred is who the kernel says is at the other end of a connection.
type peerCred struct {
	uid uint32
	err error // the look-up failed: nobody is trusted
}

// operatorOnly lets a request through only from root or the node's own
// user (callerAllowed) that also passes controlRequest.
func (a *localAPI) operatorOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(peerKey{}).(peerCred)
		if !ok {
			p.err = errors.New("not a control socket connection")
		}
		if err := callerAllowed(p.uid, p.err, a.uid); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
		if err := controlRequest(r); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
		h(w, r)
	}
}

// callerAllowed decides who may change a node running as uid self: root
// and self. lookupErr is the failure to learn the caller's uid, which
// refuses everyone.
func callerAllowed(uid uint32, lookupErr error, self uint32) error {
	switch {
	case lookupErr != nil:
		return fmt.Errorf("cannot tell who is calling, so no change is allowed: %w", lookupErr)
	case uid == 0 || uid == self:
		return nil
	case self == 0:
		return fmt.Errorf("only root may change this node's announcements, not uid %d", uid)
	default:
		return fmt.Errorf("only root or uid %d may change this node's announcements, not uid %d", self, uid)
	}
}

// controlRequest keeps the checks that still apply on the socket, where no
// browser can reach: no Origin header, and a POST body that says it is
// JSON (which a form cannot send without a CORS preflight).
func controlRequest(r *http.Request) error {
	if r.Header.Get("Origin") != "" {
		return fmt.Errorf("the control API does not answer web pages (Origin %q)", r.Header.Get("Origin"))
	}
	if r.Method == http.MethodPost && r.Header.Get("Content-Type") != "application/json" {
		return fmt.Errorf("the control API wants Content-Type application/json")
	}
	return nil
}

// moved answers a change sent to the TCP status address.
func (a *localAPI) moved(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusForbidden, fmt.Errorf("the status address is read-only; changes go through the node's control socket (ambassador announce and drain use it)"))
}

// hostGuard serves h only to requests whose Host header passes
// hostAllowed for one of the listen addresses; others get 403.
func hostGuard(listen []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := hostAllowed(r.Host, listen); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllowed is the DNS-rebinding defence of the TCP status address. A
// web page whose name an attacker points at 127.0.0.1 can send requests
// there, but the browser sends the page's own name as Host. So only names
// no attacker controls pass: one of the listen addresses as given,
// localhost (any port: an ssh tunnel may change it), or an IP literal.
func hostAllowed(host string, listen []string) error {
	if host == "" {
		return errors.New("a request without a Host header is refused")
	}
	for _, l := range listen {
		if l != "" && strings.EqualFold(host, l) {
			return nil
		}
	}
	h := host
	if hh, port, err := net.SplitHostPort(host); err == nil {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("host %q has a bad port", host)
		}
		h = hh
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if strings.EqualFold(h, "localhost") {
		return nil
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	return fmt.Errorf("host %q is not this address, localhost or an IP literal (a DNS-rebinding defence)", host)
}

// Fetch reads one of the status API's documents (path "/v1/members" or
// "/v1/services") from a running node's TCP status address addr into v. An
// error answer comes back as an error carrying the node's message. The
// status address serves read-only documents; changes go through
// CallSocket.
func Fetch(ctx context.Context, addr, path string, v any) error {
	hp, err := ParseAddr(addr, "127.0.0.1")
	if err != nil {
		return fmt.Errorf("mesh: status api address: %w", err)
	}
	return call(ctx, http.DefaultClient, "http://"+hp, hp, http.MethodGet, path, nil, v)
}

// CallSocket sends one request (method, path, body as JSON if not nil)
// through a node's control socket at sock and decodes the answer into v:
// the way to change what the node announces. An error answer comes back
// as an error carrying the node's message.
func CallSocket(ctx context.Context, sock, method, path string, body, v any) error {
	if sock == "" {
		return errors.New("mesh: no control socket path given")
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	return call(ctx, &http.Client{Transport: tr}, "http://localhost", sock, method, path, body, v)
}

func call(ctx context.Context, client *http.Client, base, where, method, path string, body, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("mesh: local api: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return fmt.Errorf("mesh: local api: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("mesh: cannot open the node's control socket %s: %w", where, err)
	case err != nil:
		return fmt.Errorf("mesh: is a node running? local api at %s: %w", where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusForbidden {
				return fmt.Errorf("node refused the request: %s", e.Error)
			}
			return fmt.Errorf("node at %s: %s", where, e.Error)
		}
		return fmt.Errorf("mesh: local api %s%s: %s", where, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("mesh: local api %s%s: decode: %w", where, path, err)
	}
	return nil
}
