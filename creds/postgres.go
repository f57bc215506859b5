package creds

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxPostgresBody bounds each server message during the handshake. The
// messages seen there (auth requests, ParameterStatus, BackendKeyData,
// notices, errors) are small; pgproto3's own default is 1 GiB.
const maxPostgresBody = 64 << 10

// maxPostgresQueued bounds the server bytes the handshake holds for the
// client. Past it, what is queued is flushed to the client instead of kept
// until ReadyForQuery, so a server that streams messages cannot grow our
// memory. A real handshake (a dozen ParameterStatus) stays far below it and
// reaches the client in one write.
const maxPostgresQueued = 64 << 10

// maxNegotiations is how many SSLRequest/GSSEncRequest a client may send
// before its StartupMessage: libpq tries GSS first, then SSL.
const maxNegotiations = 2

// SQLSTATEs we send the client.
const (
	codeInvalidPassword   = "28P01" // invalid_password: the server refused us
	codeConnectionFailure = "08006" // connection_failure: anything else
)

// postgresHandshake plays the server toward the client and the client
// toward the server, using pgproto3 for the messages:
//
//  1. client → us: SSLRequest / GSSEncRequest (answered 'N', so it goes on in
//     plaintext), then StartupMessage; or a CancelRequest, which is passed
//     to the server as is, since cancel keys need no authentication.
//  2. us → server: the StartupMessage with user replaced by s.User.
//  3. server ↔ us: SCRAM-SHA-256, MD5 or cleartext authentication.
//  4. us → client: AuthenticationOk, then everything the server sends up
//     to and including the first ReadyForQuery.
//
// Then the raw conns go back, so the copy path keeps splice.
//
// Why no byte past the handshake is lost: pgproto3 reads through a
// chunkReader that fills an 8 KiB buffer with whatever the socket has, and
// a byte it buffered but did not return would vanish when we hand the raw
// conn on. Each side is therefore read through a frameReader, which never
// returns more than the rest of the current message, so pgproto3's buffer
// always ends on a message boundary. Past the last message we read
// (StartupMessage from the client, ReadyForQuery from the server) there is
// nothing buffered; the client's first Query may already be in the socket,
// but it stays there for the copy loop.
func postgresHandshake(s Secret) handshake {
	return func(ctx context.Context, client, backend net.Conn) (_, _ net.Conn, err error) {
		release := bindDeadline(ctx, client, backend)
		defer func() {
			if rerr := release(); err == nil && rerr != nil {
				err = fmt.Errorf("creds: postgres auth: %w", rerr)
			}
		}()
		fromServer := &frameReader{r: backend, typed: true}
		p := &pgSession{
			secret:     s,
			conn:       client,
			client:     pgproto3.NewBackend(&frameReader{r: client}, client),
			backend:    pgproto3.NewFrontend(fromServer, backend),
			fromServer: fromServer,
		}
		p.backend.SetMaxBodyLen(maxPostgresBody)
		if err := p.run(); err != nil {
			return nil, nil, ctxErr(ctx, err)
		}
		return client, backend, nil
	}
}

// pgSession is one postgres handshake; it is used by one goroutine.
type pgSession struct {
	secret  Secret
	conn    net.Conn           // the client conn, for the bare 'N' byte
	client  *pgproto3.Backend  // we are the server toward the client
	backend *pgproto3.Frontend // we are the client toward the server

	fromServer *frameReader // under backend; counts the server's bytes
	flushedAt  int64        // fromServer.n at the last flush to the client

	// startupDone is set once the client waits for an authentication
	// answer, from then on failures are reported to it as ErrorResponse.
	startupDone bool
}

// authError is the server's ErrorResponse during authentication.
type authError struct{ msg string }

func (e *authError) Error() string { return fmt.Sprintf("server refused: %q", e.msg) }

func (p *pgSession) run() error {
	err := p.handshake()
	if err == nil {
		return nil
	}
	if p.startupDone {
		code, msg := codeConnectionFailure, err.Error()
		var ae *authError
		if errors.As(err, &ae) {
			code, msg = codeInvalidPassword, ae.msg
		}
		p.client.Send(&pgproto3.ErrorResponse{
			Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code,
			Message: "ambassador: authentication to postgres failed: " + msg,
		})
		_ = p.client.Flush() // best effort; the caller closes both conns
	}
	return fmt.Errorf("creds: postgres auth: %w", err)
}

func (p *pgSession) handshake() error {
	startup, err := p.readStartup()
	if err != nil || startup == nil {
		return err
	}
	p.startupDone = true

	params := make(map[string]string, len(startup.Parameters))
	for k, v := range startup.Parameters {
		params[k] = v
	}
	// Postgres defaults the database to the user name. The application
	// asked (implicitly) for the database named after its own user, and
	// that choice is the application's; we only change who logs in. Without
	// a client user too, fall back to the credentials' user.
	if params["database"] == "" {
		params["database"] = params["user"]
		if params["database"] == "" {
			params["database"] = p.secret.User
		}
	}
	params["user"] = p.secret.User
	p.backend.Send(&pgproto3.StartupMessage{ProtocolVersion: startup.ProtocolVersion, Parameters: params})
	if err := p.backend.Flush(); err != nil {
		return fmt.Errorf("send startup to server: %w", err)
	}

	if err := p.authenticate(); err != nil {
		return err
	}
	return p.relayUntilReady()
}

// readStartup answers encryption requests with 'N' and returns the
// client's StartupMessage. For a CancelRequest it forwards the request and
// returns nil, nil: the copy loop then carries the server's close.
func (p *pgSession) readStartup() (*pgproto3.StartupMessage, error) {
	for range maxNegotiations + 1 {
		msg, err := p.client.ReceiveStartupMessage()
		if err != nil {
			return nil, fmt.Errorf("read startup from client: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.StartupMessage:
			return m, nil
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			// 'N' is a bare byte, not a message, so it bypasses Send.
			if _, err := p.conn.Write([]byte{'N'}); err != nil {
				return nil, fmt.Errorf("refuse encryption to client: %w", err)
			}
		case *pgproto3.CancelRequest:
			p.backend.Send(m)
			if err := p.backend.Flush(); err != nil {
				return nil, fmt.Errorf("send cancel request to server: %w", err)
			}
			return nil, nil
		default:
			return nil, fmt.Errorf("unexpected %T from client before startup", msg)
		}
	}
	return nil, errors.New("client sent too many encryption requests")
}

// authenticate answers the server's authentication requests until
// AuthenticationOk. Notices and NegotiateProtocolVersion are queued for the
// client, which gets them ahead of AuthenticationOk, in the server's order.
func (p *pgSession) authenticate() error {
	var sc *scramClient
	verified := false // the server proved it knows the password (SCRAM)
	for {
		msg, err := p.backend.Receive()
		if err != nil {
			return fmt.Errorf("read from server: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationOk:
			// Once SCRAM started, only a server that proved it knows the
			// password (SASLFinal) may let us in: a server that skips to
			// AuthenticationOk is not the one the password belongs to.
			if sc != nil && !verified {
				return errors.New("server skipped the SCRAM exchange")
			}
			p.client.Send(m)
			return nil
		case *pgproto3.AuthenticationCleartextPassword:
			// Refused: it would hand the password in clear to whatever
			// answers on the service's address, as libpq's require_auth
			// lets clients refuse. pg_hba.conf should say scram-sha-256.
			return errors.New("server asked for the password in cleartext; refused (configure scram-sha-256 or md5)")
		case *pgproto3.AuthenticationMD5Password:
			p.backend.Send(&pgproto3.PasswordMessage{Password: md5Password(p.secret.User, p.secret.Password, m.Salt)})
		case *pgproto3.AuthenticationSASL:
			if sc != nil {
				return errors.New("server restarted SASL")
			}
			if !slices.Contains(m.AuthMechanisms, scramMechanism) {
				return fmt.Errorf("server offers SASL mechanisms %q, want %s", m.AuthMechanisms, scramMechanism)
			}
			sc = &scramClient{password: p.secret.Password}
			first, err := sc.first()
			if err != nil {
				return fmt.Errorf("scram: %w", err)
			}
			p.backend.Send(&pgproto3.SASLInitialResponse{AuthMechanism: scramMechanism, Data: first})
		case *pgproto3.AuthenticationSASLContinue:
			if sc == nil || sc.authMessage != "" {
				return errors.New("unexpected SASLContinue from server")
			}
			final, err := sc.final(m.Data)
			if err != nil {
				return fmt.Errorf("scram: %w", err)
			}
			p.backend.Send(&pgproto3.SASLResponse{Data: final})
		case *pgproto3.AuthenticationSASLFinal:
			if sc == nil || sc.authMessage == "" {
				return errors.New("unexpected SASLFinal from server")
			}
			if err := sc.verify(m.Data); err != nil {
				return fmt.Errorf("scram: %w", err)
			}
			verified = true
			continue // AuthenticationOk follows; nothing to send
		case *pgproto3.ErrorResponse:
			return &authError{msg: sanitizeLine(m.Message)}
		case *pgproto3.NoticeResponse, *pgproto3.NegotiateProtocolVersion:
			if err := p.toClient(m); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("unexpected %T from server during authentication", msg)
		}
		if err := p.backend.Flush(); err != nil {
			return fmt.Errorf("send to server: %w", err)
		}
	}
}

// relayUntilReady passes the server's messages to the client up to and
// including the first ReadyForQuery, then flushes. An ErrorResponse here
// (say, the database does not exist) is the server's to tell: it is relayed
// as is and ends the handshake.
func (p *pgSession) relayUntilReady() error {
	for {
		msg, err := p.backend.Receive()
		if err != nil {
			return fmt.Errorf("read from server: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ParameterStatus, *pgproto3.BackendKeyData, *pgproto3.NoticeResponse:
			if err := p.toClient(msg); err != nil {
				return err
			}
		case *pgproto3.ReadyForQuery:
			p.client.Send(msg)
		case *pgproto3.ErrorResponse:
			p.client.Send(m)
			p.startupDone = false // the client already has the server's error
			if err := p.client.Flush(); err != nil {
				return fmt.Errorf("send to client: %w", err)
			}
			return fmt.Errorf("server error after authentication: %q", sanitizeLine(m.Message))
		default:
			return fmt.Errorf("unexpected %T from server before ReadyForQuery", msg)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			if n := p.backend.ReadBufferLen(); n != 0 {
				// frameReader makes this impossible; fail loudly rather
				// than drop bytes if pgproto3's buffering ever changes.
				return fmt.Errorf("internal error: %d server bytes buffered past ReadyForQuery", n)
			}
			if err := p.client.Flush(); err != nil {
				return fmt.Errorf("send to client: %w", err)
			}
			return nil
		}
	}
}

// toClient queues msg for the client and flushes the queue once it may hold
// maxPostgresQueued bytes: it counts every server byte read since the last
// flush, which is at least what was queued since.
func (p *pgSession) toClient(msg pgproto3.BackendMessage) error {
	p.client.Send(msg)
	if p.fromServer.n-p.flushedAt < maxPostgresQueued {
		return nil
	}
	p.flushedAt = p.fromServer.n
	if err := p.client.Flush(); err != nil {
		return fmt.Errorf("send to client: %w", err)
	}
	return nil
}

// md5Password is Postgres's MD5 response: "md5" + md5hex(md5hex(password +
// user) + salt).
func md5Password(user, password string, salt [4]byte) string {
	inner := md5.Sum([]byte(password + user))
	h := md5.New()
	h.Write([]byte(hex.EncodeToString(inner[:])))
	h.Write(salt[:])
	return "md5" + hex.EncodeToString(h.Sum(nil))
}

// frameReader reads from r but never past the end of the current Postgres
// message, so a buffering reader on top of it (pgproto3's chunkReader)
// never holds bytes of a message nobody asked for. It reads only the length
// prefix; pgproto3 does all the parsing and rejects bad lengths.
//
// typed is true for messages with a type byte (everything a server sends);
// false for the untyped startup-phase messages a client sends (SSLRequest,
// GSSEncRequest, CancelRequest, StartupMessage), the only ones we read
// from a client.
type frameReader struct {
	r     io.Reader
	typed bool

	hdr  [5]byte
	nhdr int   // header bytes read of the current message
	body int64 // body bytes left in the current message
	n    int64 // bytes returned so far
}

func (f *frameReader) hdrLen() int {
	if f.typed {
		return 5
	}
	return 4
}

func (f *frameReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if f.nhdr < f.hdrLen() {
		p = p[:min(len(p), f.hdrLen()-f.nhdr)]
		n, err := f.r.Read(p)
		copy(f.hdr[f.nhdr:], p[:n])
		f.nhdr += n
		f.n += int64(n)
		if f.nhdr == f.hdrLen() {
			l := int64(int32(binary.BigEndian.Uint32(f.hdr[f.hdrLen()-4:])))
			f.body = max(l-4, 0) // the length counts itself
			if f.body == 0 {
				f.nhdr = 0
			}
		}
		return n, err
	}
	p = p[:min(int64(len(p)), f.body)]
	n, err := f.r.Read(p)
	f.body -= int64(n)
	f.n += int64(n)
	if f.body == 0 {
		f.nhdr = 0
	}
	return n, err
}
