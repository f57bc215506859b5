// Package creds injects credentials into forwarded connections, so an
// application next to an ambassador can reach a service without holding its
// password.
//
// With --credentials NAME=PROTO:FILE the ambassador on the client host reads a
// secret from FILE (Load) and, for every connection to service NAME, runs the
// Handshake built by New after the backend connection is up and before any
// bytes are copied. The handshake authenticates to the real service on the
// application's behalf and returns the two conns for the copy loop:
//
//   - redis, postgres: the handshake talks to the backend (and, for postgres,
//     to the client) and then returns the raw conns, so the copy path keeps
//     splice(2).
//   - http-basic, http-bearer: the client conn is wrapped so that every
//     HTTP/1.1 request gets an Authorization header (but a TRACE, which
//     the server echoes back, goes without one); the backend→client
//     direction stays raw.
//
// The package knows nothing about forward, nodes or gossip; it uses only the
// standard library and pgproto3 for the PostgreSQL wire messages.
package creds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Protocol names accepted by Parse, Load and New.
const (
	protoRedis      = "redis"
	protoPostgres   = "postgres"
	protoHTTPBasic  = "http-basic"
	protoHTTPBearer = "http-bearer"
)

// maxFileSize bounds how much of a credentials file Load reads. A secret is
// one line; anything bigger is a mistake (a key file, a binary).
const maxFileSize = 64 << 10

// redacted is what every printing method of Secret produces.
const redacted = "[redacted]"

// handshake authenticates one forwarded connection (forward's Handshake). It
// may exchange messages with either side and returns the two conns to copy
// between: the same ones, or wrappers. ctx bounds the handshake only; conn
// deadlines set from it are cleared before it returns. On error the caller
// closes both conns.
type handshake = func(ctx context.Context, client, backend net.Conn) (net.Conn, net.Conn, error)

// Secret is what a credentials file holds. Its String, GoString, Format,
// LogValue and MarshalJSON methods print "[redacted]", so neither fmt, slog
// nor encoding/json can put it into a log. Read the fields directly. One
// exception: fmt cannot call the methods of an unexported struct field, so
// formatting a struct that holds a Secret in one (pgSession.secret) prints
// the fields; never format such a struct.
type Secret struct{ User, Password, Token string }

// String returns "[redacted]".
func (Secret) String() string { return redacted }

// GoString returns "[redacted]", so %#v does not print the fields.
func (Secret) GoString() string { return redacted }

// Format writes "[redacted]" for every verb, including %+v, %x and %q.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue makes slog print "[redacted]" with any handler.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON returns the JSON string "[redacted]".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Spec is a parsed --credentials flag value NAME=PROTO:FILE.
type Spec struct {
	Name        svcname.Name
	Proto, Path string
}

// Parse parses the flag value NAME=PROTO:FILE, where PROTO is one of redis,
// postgres, http-basic and http-bearer. NAME is a service name by the
// rule every package applies (svcname: RFC 6335). FILE is everything after the
// first colon that follows PROTO, so it may itself contain colons.
func Parse(s string) (Spec, error) {
	raw, rest, ok := strings.Cut(s, "=")
	if !ok {
		return Spec{}, fmt.Errorf("creds: parse %q: want NAME=PROTO:FILE", s)
	}
	name, err := svcname.Parse(raw)
	if err != nil {
		return Spec{}, fmt.Errorf("creds: parse %q: %w", s, err)
	}
	proto, path, ok := strings.Cut(rest, ":")
	if !ok {
		return Spec{}, fmt.Errorf("creds: parse %q: want NAME=PROTO:FILE", s)
	}
	if !knownProto(proto) {
		return Spec{}, fmt.Errorf("creds: parse %q: unknown protocol %q (want redis, postgres, http-basic or http-bearer)", s, proto)
	}
	if path == "" {
		return Spec{}, fmt.Errorf("creds: parse %q: empty file name", s)
	}
	return Spec{Name: name, Proto: proto, Path: path}, nil
}

func knownProto(p string) bool {
	switch p {
	case protoRedis, protoPostgres, protoHTTPBasic, protoHTTPBearer:
		return true
	}
	return false
}

// Load reads the secret for proto from the file at path. Only the first line
// counts, with surrounding whitespace trimmed (so a secret cannot begin or end
// with a space):
//
//   - redis: "password" or "user:password" (split at the first colon; write
//     "default:pass:word" for a password with a colon and no ACL user)
//   - postgres: "user:password"
//   - http-basic: "user:password" (RFC 7617: the user cannot hold a colon)
//   - http-bearer: a token
//
// User (where required), password and token must be non-empty and free of
// control characters. Errors name the file and what is wrong, never the
// secret. warn is true when the file is readable by group or others; the
// caller warns once. Load is safe for concurrent use.
func Load(proto, path string) (s Secret, warn bool, err error) {
	if !knownProto(proto) {
		return Secret{}, false, fmt.Errorf("creds: load %q: unknown protocol %q", path, proto)
	}
	f, err := os.Open(path)
	if err != nil {
		return Secret{}, false, fmt.Errorf("creds: load: %w", err) // *PathError names the file
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Secret{}, false, fmt.Errorf("creds: load: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Secret{}, false, fmt.Errorf("creds: load %q: not a regular file", path)
	}
	warn = fi.Mode().Perm()&0o044 != 0
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Secret{}, false, fmt.Errorf("creds: load: %w", err)
	}
	if len(data) > maxFileSize {
		return Secret{}, false, fmt.Errorf("creds: load %q: file is larger than %d bytes", path, maxFileSize)
	}
	s, err = parseSecret(proto, data)
	if err != nil {
		return Secret{}, false, fmt.Errorf("creds: load %q: %w", path, err)
	}
	return s, warn, nil
}

// parseSecret turns a file's contents into a Secret. Its errors describe
// the problem and never quote the input.
func parseSecret(proto string, data []byte) (Secret, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	v := strings.TrimSpace(string(line))
	if v == "" {
		return Secret{}, errors.New("first line is empty")
	}
	var s Secret
	switch proto {
	case protoRedis:
		if u, p, ok := strings.Cut(v, ":"); ok {
			s.User, s.Password = u, p
		} else {
			s.Password = v
		}
	case protoPostgres, protoHTTPBasic:
		u, p, ok := strings.Cut(v, ":")
		if !ok {
			return Secret{}, errors.New(`want "user:password" on the first line (no colon found)`)
		}
		s.User, s.Password = u, p
	case protoHTTPBearer:
		s.Token = v
	default:
		return Secret{}, fmt.Errorf("unknown protocol %q", proto)
	}
	return s, validSecret(proto, s)
}

// validSecret checks what each protocol needs. New calls it too, so a Secret
// built by hand is held to the same rules as a loaded one.
func validSecret(proto string, s Secret) error {
	for _, f := range []struct{ name, v string }{{"user", s.User}, {"password", s.Password}, {"token", s.Token}} {
		if strings.ContainsFunc(f.v, unicode.IsControl) {
			return fmt.Errorf("%s contains a control character", f.name)
		}
	}
	switch proto {
	case protoRedis:
		if s.Password == "" {
			return errors.New("empty password")
		}
		if s.User == "" && strings.Contains(s.Password, ":") {
			// Only reachable from New: Load would have split it.
			return errors.New("empty user before the colon")
		}
	case protoPostgres, protoHTTPBasic:
		if s.User == "" {
			return errors.New("empty user")
		}
		if s.Password == "" {
			return errors.New("empty password")
		}
		if proto == protoHTTPBasic && strings.Contains(s.User, ":") {
			return errors.New("http-basic user contains a colon")
		}
	case protoHTTPBearer:
		if s.Token == "" {
			return errors.New("empty token")
		}
	}
	return nil
}

// New returns the Handshake for proto that authenticates with s. It checks s
// as Load does and starts nothing; the returned func is safe for concurrent
// use, one call per connection.
func New(proto string, s Secret) (func(ctx context.Context, client, backend net.Conn) (net.Conn, net.Conn, error), error) {
	// The result type is spelled out rather than named so that forward's
	// Handshake type accepts it without either package importing the other.
	if !knownProto(proto) {
		return nil, fmt.Errorf("creds: new: unknown protocol %q", proto)
	}
	if err := validSecret(proto, s); err != nil {
		return nil, fmt.Errorf("creds: new %s: %w", proto, err)
	}
	switch proto {
	case protoRedis:
		return redisHandshake(s), nil
	case protoPostgres:
		return postgresHandshake(s), nil
	case protoHTTPBasic:
		return httpHandshake("Basic " + basicAuth(s.User, s.Password)), nil
	default:
		return httpHandshake("Bearer " + s.Token), nil
	}
}

// pastDeadline is set on conns to unblock I/O when ctx is canceled.
var pastDeadline = time.Unix(1, 0)

// bindDeadline makes I/O on conns honour ctx: it sets ctx's deadline on
// them, and on cancellation a deadline in the past so blocked reads and
// writes return. The returned release clears the deadlines; it reports
// ctx.Err() if the cancellation raced the handshake's end, because the
// conns' deadlines may then have been tripped.
func bindDeadline(ctx context.Context, conns ...net.Conn) (release func() error) {
	d, hasDeadline := ctx.Deadline()
	for _, c := range conns {
		if hasDeadline {
			_ = c.SetDeadline(d)
		}
	}
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		for _, c := range conns {
			_ = c.SetDeadline(pastDeadline)
		}
	})
	return func() error {
		var err error
		if !stop() {
			// The AfterFunc has started: wait for it, or it could set
			// pastDeadline after we clear, killing the copy loop.
			<-done
			err = ctx.Err()
		}
		for _, c := range conns {
			_ = c.SetDeadline(time.Time{})
		}
		return err
	}
}

// ctxErr prefers ctx's error to the os.ErrDeadlineExceeded a conn returns
// after bindDeadline tripped it, so callers see why the handshake stopped.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}
