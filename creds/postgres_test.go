package creds

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakePG is a Postgres server good enough for authentication: it checks
// the startup parameters, runs one auth method, and then answers one Query.
type fakePG struct {
	method   string // "scram", "md5", "cleartext", "reject", "badsig", "skipfinal"
	user     string
	password string
	wantDB   string
}

func (f fakePG) serve(conn net.Conn) error {
	be := pgproto3.NewBackend(conn, conn)
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		return fmt.Errorf("startup: %w", err)
	}
	sm, ok := msg.(*pgproto3.StartupMessage)
	if !ok {
		return fmt.Errorf("got %T, want StartupMessage", msg)
	}
	if got := sm.Parameters["user"]; got != f.user {
		return fmt.Errorf("startup user = %q, want %q", got, f.user)
	}
	if got := sm.Parameters["database"]; got != f.wantDB {
		return fmt.Errorf("startup database = %q, want %q", got, f.wantDB)
	}
	if got := sm.Parameters["application_name"]; got != "app" {
		return fmt.Errorf("startup application_name = %q, want %q (other parameters must be kept)", got, "app")
	}

	authOK := true
	switch f.method {
	case "scram", "badsig", "skipfinal":
		authOK, err = f.scram(be)
	case "md5", "reject":
		salt := [4]byte{1, 2, 3, 4}
		be.Send(&pgproto3.AuthenticationMD5Password{Salt: salt})
		pm, err2 := f.receivePassword(be, pgproto3.AuthTypeMD5Password)
		err = err2
		authOK = pm == md5Password(f.user, f.password, salt) && f.method != "reject"
	case "cleartext":
		// The handshake must refuse to send the password in clear: it
		// hangs up instead, and no password ever arrives.
		be.Send(&pgproto3.AuthenticationCleartextPassword{})
		if err := be.Flush(); err != nil {
			return err
		}
		if msg, err := be.Receive(); err == nil {
			return fmt.Errorf("got %T after asking for a cleartext password, want the connection closed", msg)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !authOK {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01",
			Message: fmt.Sprintf("password authentication failed for user %q", f.user)})
		return be.Flush()
	}
	if f.method == "badsig" {
		return nil // scram already sent the wrong signature
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "17.0"})
	be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 42, SecretKey: []byte{0, 0, 0, 7}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return err
	}
	if f.method == "skipfinal" {
		return nil // the handshake hangs up: it does not trust this server
	}
	msg, err = be.Receive()
	if err != nil {
		return fmt.Errorf("after ready: %w", err)
	}
	q, ok := msg.(*pgproto3.Query)
	if !ok || q.String != "SELECT 1" {
		return fmt.Errorf("got %#v, want Query SELECT 1", msg)
	}
	be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return be.Flush()
}

func (f fakePG) receivePassword(be *pgproto3.Backend, authType uint32) (string, error) {
	if err := be.Flush(); err != nil {
		return "", err
	}
	if err := be.SetAuthType(authType); err != nil {
		return "", err
	}
	msg, err := be.Receive()
	if err != nil {
		return "", err
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return "", fmt.Errorf("got %T, want PasswordMessage", msg)
	}
	return pm.Password, nil
}

// scram is the server side of SCRAM-SHA-256, computed with the RFC 5802
// formulas independently of scramClient. It reports whether the client's
// proof was right.
func (f fakePG) scram(be *pgproto3.Backend) (bool, error) {
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}})
	if err := be.Flush(); err != nil {
		return false, err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return false, err
	}
	msg, err := be.Receive()
	if err != nil {
		return false, err
	}
	init, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok || init.AuthMechanism != "SCRAM-SHA-256" {
		return false, fmt.Errorf("got %#v, want SASLInitialResponse SCRAM-SHA-256", msg)
	}
	clientFirstBare, ok := strings.CutPrefix(string(init.Data), "n,,")
	if !ok {
		return false, fmt.Errorf("client-first %q lacks the n,, header", init.Data)
	}
	clientNonce, ok := strings.CutPrefix(clientFirstBare, "n=,r=")
	if !ok || clientNonce == "" {
		return false, fmt.Errorf("client-first-bare %q", clientFirstBare)
	}
	salt := []byte("0123456789abcdef")
	const iter = 4096
	nonce := clientNonce + "SERVERNONCE"
	serverFirst := fmt.Sprintf("r=%s,s=%s,i=%d", nonce, base64.StdEncoding.EncodeToString(salt), iter)
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	if err := be.Flush(); err != nil {
		return false, err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return false, err
	}
	msg, err = be.Receive()
	if err != nil {
		return false, err
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return false, fmt.Errorf("got %T, want SASLResponse", msg)
	}
	withoutProof, proofB64, ok := strings.Cut(string(resp.Data), ",p=")
	if !ok || withoutProof != "c=biws,r="+nonce {
		return false, fmt.Errorf("client-final %q", resp.Data)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return false, fmt.Errorf("client proof %q", proofB64)
	}
	mac := func(key []byte, s string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	salted, err := pbkdf2.Key(sha256.New, f.password, salt, iter, 32)
	if err != nil {
		return false, err
	}
	storedKey := sha256.Sum256(mac(salted, "Client Key"))
	authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
	clientSig := mac(storedKey[:], authMessage)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ clientSig[i]
	}
	if got := sha256.Sum256(clientKey); got != storedKey {
		return false, nil
	}
	serverSig := mac(mac(salted, "Server Key"), authMessage)
	if f.method == "badsig" {
		serverSig[0] ^= 0xff
	}
	if f.method == "skipfinal" {
		return true, nil // straight to AuthenticationOk: no proof it knows the password
	}
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSig))})
	return true, be.Flush()
}

func TestPostgres(t *testing.T) {
	const pw = secretText
	tests := []struct {
		name       string
		server     fakePG
		secret     Secret
		sslRequest bool
		database   string // "" leaves it out of the client's startup
		wantErr    string // substring of the client's ErrorResponse; "" means success
		wantCode   string
	}{
		{name: "scram", server: fakePG{method: "scram", user: "svc", password: pw, wantDB: "appdb"},
			secret: Secret{User: "svc", Password: pw}, sslRequest: true, database: "appdb"},
		{name: "scram default database is the client user", server: fakePG{method: "scram", user: "svc", password: pw, wantDB: "appuser"},
			secret: Secret{User: "svc", Password: pw}},
		{name: "md5", server: fakePG{method: "md5", user: "svc", password: pw, wantDB: "appdb"},
			secret: Secret{User: "svc", Password: pw}, database: "appdb"},
		{name: "cleartext refused", server: fakePG{method: "cleartext", user: "svc", password: pw, wantDB: "appdb"},
			secret: Secret{User: "svc", Password: pw}, sslRequest: true, database: "appdb",
			wantErr: "cleartext; refused", wantCode: "08006"},
		{name: "scram wrong password", server: fakePG{method: "scram", user: "svc", password: pw, wantDB: "appdb"},
			secret: Secret{User: "svc", Password: "wrong-" + pw}, database: "appdb",
			wantErr: `ambassador: authentication to postgres failed: password authentication failed for user "svc"`, wantCode: "28P01"},
		{name: "md5 wrong password", server: fakePG{method: "md5", user: "svc", password: pw, wantDB: "appdb"},
			secret: Secret{User: "svc", Password: "wrong-" + pw}, database: "appdb",
			wantErr: `ambassador: authentication to postgres failed: password authentication failed`, wantCode: "28P01"},
		{name: "error response", server: fakePG{method: "reject", user: "svc", password: pw, wantDB: "appdb"},
			secret: Secret{User: "svc", Password: pw}, sslRequest: true, database: "appdb",
			wantErr: `ambassador: authentication to postgres failed: password authentication failed`, wantCode: "28P01"},
		{name: "scram without the server's proof", server: fakePG{method: "skipfinal", user: "svc", password: pw, wantDB: "appdb"},
			secret: Secret{User: "svc", Password: pw}, database: "appdb",
			wantErr: "server skipped the SCRAM exchange", wantCode: "08006"},
		{name: "scram bad server signature", server: fakePG{method: "badsig", user: "svc", password: pw, wantDB: "appdb"},
			secret: Secret{User: "svc", Password: pw}, database: "appdb",
			wantErr: "server signature does not match", wantCode: "08006"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newSetup(t)
			h, err := New("postgres", tc.secret)
			if err != nil {
				t.Fatal(err)
			}
			serverErr := make(chan error, 1)
			go func() { serverErr <- tc.server.serve(st.server) }()

			type result struct {
				c, b net.Conn
				err  error
			}
			hsDone := make(chan result, 1)
			go func() {
				c, b, err := h(testCtx(t), st.client, st.backend)
				hsDone <- result{c, b, err}
			}()

			fe := pgproto3.NewFrontend(st.app, st.app)
			if tc.sslRequest {
				fe.Send(&pgproto3.SSLRequest{})
				if err := fe.Flush(); err != nil {
					t.Fatal(err)
				}
				var b [1]byte
				if _, err := io.ReadFull(st.app, b[:]); err != nil || b[0] != 'N' {
					t.Fatalf("SSLRequest answer = %q, %v; want 'N'", b[:], err)
				}
			}
			params := map[string]string{"user": "appuser", "application_name": "app"}
			if tc.database != "" {
				params["database"] = tc.database
			}
			fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}

			if tc.wantErr != "" {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatalf("client receive: %v", err)
				}
				er, ok := msg.(*pgproto3.ErrorResponse)
				if !ok {
					t.Fatalf("client got %T, want ErrorResponse", msg)
				}
				if er.Severity != "FATAL" || er.Code != tc.wantCode || !strings.Contains(er.Message, tc.wantErr) {
					t.Errorf("client got %s %s %q, want FATAL %s containing %q", er.Severity, er.Code, er.Message, tc.wantCode, tc.wantErr)
				}
				if strings.Contains(er.Message, secretText) {
					t.Errorf("client error %q contains the password", er.Message)
				}
				r := <-hsDone
				if r.err == nil {
					t.Fatal("handshake succeeded, want an error")
				}
				if strings.Contains(r.err.Error(), secretText) {
					t.Errorf("handshake error %q contains the password", r.err)
				}
				st.client.Close()
				st.backend.Close()
				if err := <-serverErr; err != nil {
					t.Errorf("fake server: %v", err)
				}
				return
			}

			var got []string
			for {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatalf("client receive after %q: %v", got, err)
				}
				got = append(got, fmt.Sprintf("%T", msg))
				if ps, ok := msg.(*pgproto3.ParameterStatus); ok {
					got[len(got)-1] += " " + ps.Name + "=" + ps.Value
				}
				if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
			want := []string{"*pgproto3.AuthenticationOk", "*pgproto3.ParameterStatus server_version=17.0",
				"*pgproto3.ParameterStatus client_encoding=UTF8", "*pgproto3.BackendKeyData", "*pgproto3.ReadyForQuery"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("client got %q, want %q", got, want)
			}
			r := <-hsDone
			if r.err != nil {
				t.Fatalf("handshake: %v", r.err)
			}
			if r.c != st.client || r.b != st.backend {
				t.Fatal("handshake did not return the raw conns (splice would be lost)")
			}
			copyBoth(t, r.c, r.b)
			fe.Send(&pgproto3.Query{String: "SELECT 1"})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"*pgproto3.CommandComplete", "*pgproto3.ReadyForQuery"} {
				msg, err := fe.Receive()
				if err != nil {
					t.Fatalf("client receive after query: %v", err)
				}
				if g := fmt.Sprintf("%T", msg); g != want {
					t.Errorf("client got %s after query, want %s", g, want)
				}
			}
			if err := <-serverErr; err != nil {
				t.Errorf("fake server: %v", err)
			}
		})
	}
}

// TestPostgresNoReadAhead checks the frameReader promise: bytes the client
// sends right behind its StartupMessage, and bytes the server sends right
// behind ReadyForQuery, are still in the sockets for the copy loop.
func TestPostgresNoReadAhead(t *testing.T) {
	st := newSetup(t)
	h, err := New("postgres", Secret{User: "svc", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	serverErr := make(chan error, 1)
	go func() {
		serverErr <- func() error {
			be := pgproto3.NewBackend(&frameReader{r: st.server}, st.server)
			if _, err := be.ReceiveStartupMessage(); err != nil {
				return err
			}
			// One write, so the extra bytes reach the backend socket together
			// with ReadyForQuery. Not something a server does, but it must
			// not get lost.
			out := append(mustEncode(&pgproto3.AuthenticationOk{}), mustEncode(&pgproto3.ReadyForQuery{TxStatus: 'I'})...)
			if _, err := st.server.Write(append(out, "SERVER-EXTRA"...)); err != nil {
				return err
			}
			buf := make([]byte, len("CLIENT-EXTRA"))
			if _, err := io.ReadFull(st.server, buf); err != nil {
				return err
			}
			if string(buf) != "CLIENT-EXTRA" {
				return fmt.Errorf("server got %q, want CLIENT-EXTRA", buf)
			}
			return st.server.CloseWrite()
		}()
	}()
	startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "app"}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.app.Write(append(startup, "CLIENT-EXTRA"...)); err != nil {
		t.Fatal(err)
	}
	c, b, err := h(testCtx(t), st.client, st.backend)
	if err != nil {
		t.Fatal(err)
	}
	copyBoth(t, c, b)
	st.app.CloseWrite()
	got := readAllTimeout(t, st.app)
	wantPrefix := []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0, 'Z', 0, 0, 0, 5, 'I'}
	if !bytes.Equal(got, append(wantPrefix, "SERVER-EXTRA"...)) {
		t.Errorf("app got %q, want AuthenticationOk, ReadyForQuery, SERVER-EXTRA", got)
	}
	if err := <-serverErr; err != nil {
		t.Errorf("fake server: %v", err)
	}
}

func TestPostgresCancelRequest(t *testing.T) {
	st := newSetup(t)
	h, err := New("postgres", Secret{User: "svc", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	cancel, err := (&pgproto3.CancelRequest{ProcessID: 42, SecretKey: []byte{0, 0, 0, 7}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.app.Write(cancel); err != nil {
		t.Fatal(err)
	}
	c, b, err := h(testCtx(t), st.client, st.backend)
	if err != nil {
		t.Fatal(err)
	}
	if c != st.client || b != st.backend {
		t.Fatal("handshake did not return the raw conns")
	}
	got := make([]byte, len(cancel))
	if _, err := io.ReadFull(st.server, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, cancel) {
		t.Errorf("server got %x, want the CancelRequest %x", got, cancel)
	}
}

func TestPostgresDeadline(t *testing.T) {
	st := newSetup(t)
	h, err := New("postgres", Secret{User: "svc", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	// The client never sends its startup message.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, _, err = h(ctx, st.client, st.backend)
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("handshake error = %v, want a deadline error", err)
	}
	// The deadline must be cleared: a read now blocks rather than failing
	// at once. Prove it by having data ready.
	if _, err := st.app.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := st.client.Read(b[:]); err != nil {
		t.Fatalf("read after handshake: %v (deadline not cleared)", err)
	}
}

var postgresStartupCases = [][]byte{
	mustEncode(&pgproto3.SSLRequest{}),
	append(mustEncode(&pgproto3.SSLRequest{}), mustEncode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u", "database": "d"}})...),
	append(mustEncode(&pgproto3.GSSEncRequest{}), mustEncode(&pgproto3.SSLRequest{})...),
	mustEncode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{}}),
	mustEncode(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}),
	// A CancelRequest after a refused encryption request, with a longer
	// key (protocol 3.2 allows up to 256 bytes): found by the fuzzer.
	[]byte("\x00\x00\x00\b\x04\xd2\x160\x00\x00\x00\x11\x04\xd2\x16.000000000"),
	{0, 0, 0, 8, 0, 0, 0, 0},
	{0xff, 0xff, 0xff, 0xff},
	{0, 0, 0, 3},
	{},
}

func mustEncode(m interface{ Encode([]byte) ([]byte, error) }) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

func TestPostgresStartupGarbage(t *testing.T) {
	for i, in := range postgresStartupCases {
		t.Run(fmt.Sprint(i), func(t *testing.T) { runPostgresStartup(t, in) })
	}
}

func FuzzPostgresStartup(f *testing.F) {
	for _, in := range postgresStartupCases {
		f.Add(in)
	}
	f.Fuzz(runPostgresStartup)
}

// runPostgresStartup feeds in as the client's bytes into the handshake over
// net.Pipe, with a server that answers cleartext auth and then refuses. It
// must return (no panic, no hang) and never report success.
func runPostgresStartup(t *testing.T, in []byte) {
	client, app := net.Pipe()
	backend, server := net.Pipe()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer client.Close()
	defer backend.Close()
	wg.Go(func() { // the app: write the input, then hang up
		_, _ = app.Write(in)
		app.Close()
	})
	wg.Go(func() { // the app's reading side drains whatever we answer
		_, _ = io.Copy(io.Discard, app)
	})
	wg.Go(func() {
		defer server.Close()
		be := pgproto3.NewBackend(server, server)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			return
		}
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "no"})
		_ = be.Flush()
	})
	h, err := New("postgres", Secret{User: "svc", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, b, err := h(ctx, client, backend)
	client.Close()
	backend.Close()
	if err == nil {
		// Only a CancelRequest is handed on without authentication.
		if _, ok := decodeCancel(in); !ok {
			t.Fatalf("handshake on %x succeeded (%v, %v), want an error", in, c, b)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handshake on %x hung until the deadline", in)
	}
}

// decodeCancel reports whether in holds a CancelRequest where the
// handshake takes one (readStartup): first, or after at most
// maxNegotiations encryption requests, which it refuses.
func decodeCancel(in []byte) (*pgproto3.CancelRequest, bool) {
	be := pgproto3.NewBackend(bytes.NewReader(in), io.Discard)
	for range maxNegotiations + 1 {
		m, err := be.ReceiveStartupMessage()
		if err != nil {
			return nil, false
		}
		switch m := m.(type) {
		case *pgproto3.CancelRequest:
			return m, true
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			continue
		}
		return nil, false
	}
	return nil, false
}

// TestPostgresBoundedRelay checks that the handshake does not hold
// everything the server sends before ReadyForQuery until ReadyForQuery
// comes: a server (or an impostor on the service's address) that streams
// ParameterStatus messages would otherwise grow the node's memory for as
// long as the handshake deadline allows. Past a bound, what is queued must
// reach the client.
func TestPostgresBoundedRelay(t *testing.T) {
	st := newSetup(t)
	h, err := New("postgres", Secret{User: "svc", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	const total = 4 << 20 // far more than a handshake needs to hold
	appGot := make(chan struct{})
	serverErr := make(chan error, 1)
	go func() {
		serverErr <- func() error {
			be := pgproto3.NewBackend(st.server, st.server)
			if _, err := be.ReceiveStartupMessage(); err != nil {
				return err
			}
			be.Send(&pgproto3.AuthenticationOk{})
			value := strings.Repeat("v", 32<<10)
			for i := 0; i < total/len(value); i++ {
				be.Send(&pgproto3.ParameterStatus{Name: fmt.Sprint("p", i), Value: value})
				if err := be.Flush(); err != nil {
					return err
				}
			}
			var waitErr error
			select {
			case <-appGot:
			case <-time.After(3 * time.Second):
				waitErr = fmt.Errorf("app got nothing while the handshake held %d bytes of server messages", total)
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if err := be.Flush(); err != nil {
				return err
			}
			return waitErr
		}()
	}()
	go func() {
		var b [1]byte
		if _, err := io.ReadFull(st.app, b[:]); err == nil {
			close(appGot)
		}
		_, _ = io.Copy(io.Discard, st.app)
	}()
	startup := mustEncode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "app"}})
	if _, err := st.app.Write(startup); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h(testCtx(t), st.client, st.backend); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := <-serverErr; err != nil {
		t.Error(err)
	}
}
