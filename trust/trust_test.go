package trust

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newIdentity(t testing.TB, name string) *Identity {
	t.Helper()
	id, err := NewIdentity(name)
	if err != nil {
		t.Fatalf("NewIdentity(%q): %v", name, err)
	}
	return id
}

var parseKeyCases = []struct {
	name    string
	in      string
	wantLen int    // 0 = error
	wantErr string // substring of the error
}{
	{"16 bytes padded", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16)), 16, ""},
	{"16 bytes unpadded", base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16)), 16, ""},
	{"24 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 24)), 24, ""},
	{"32 bytes padded", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)), 32, ""},
	{"32 bytes unpadded", base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32)), 32, ""},
	{"surrounding space", " \t" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{4}, 32)) + "\n", 32, ""},
	{"empty", "", 0, "empty"},
	{"15 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 15)), 0, "15 bytes"},
	{"31 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 31)), 0, "31 bytes"},
	{"33 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 33)), 0, "33 bytes"},
	{"url alphabet", strings.Repeat("_-", 16), 0, "base64"},
	{"not base64", "this is not a key!", 0, "base64"},
	{"wrong padding", base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16)) + "=", 0, "base64"},
}

func TestParseKey(t *testing.T) {
	for _, tc := range parseKeyCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			if tc.wantLen == 0 {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %d bytes, %v; want an error containing %q", len(got), err, tc.wantErr)
				}
				if s := strings.TrimSpace(tc.in); s != "" && strings.Contains(err.Error(), s) {
					t.Errorf("error %q repeats the key", err)
				}
				return
			}
			if err != nil || len(got) != tc.wantLen {
				t.Fatalf("got %d bytes, %v; want %d bytes", len(got), err, tc.wantLen)
			}
		})
	}
}

func FuzzParseKey(f *testing.F) {
	for _, tc := range parseKeyCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseKey(s)
		if err != nil {
			return
		}
		if n := len(b); n != 16 && n != 24 && n != 32 {
			t.Fatalf("accepted a %d-byte key", n)
		}
		// A valid key round-trips through both encodings.
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
			again, err := ParseKey(enc.EncodeToString(b))
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-encoded key: got %x, %v; want %x", again, err, b)
			}
		}
	})
}

func TestGenerateKey(t *testing.T) {
	a, b := GenerateKey(), GenerateKey()
	if a == b {
		t.Fatalf("two generated keys are equal: %q", a)
	}
	k, err := ParseKey(a)
	if err != nil || len(k) != 32 {
		t.Fatalf("ParseKey(GenerateKey()): got %d bytes, %v; want 32", len(k), err)
	}
}

func TestReadKeyFile(t *testing.T) {
	k1, k2 := GenerateKey(), GenerateKey()
	for _, tc := range []struct {
		name    string
		content string
		want    []string
		wantErr string
	}{
		{"one", k1 + "\n", []string{k1}, ""},
		{"comments and blanks", "# primary\n\n  " + k1 + "  \n# old\n" + k2, []string{k1, k2}, ""},
		{"crlf", k1 + "\r\n" + k2 + "\r\n", []string{k1, k2}, ""},
		{"empty", "\n# nothing\n", nil, "no key"},
		{"bad line", k1 + "\nshort\n", nil, "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadKeyFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ReadKeyFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want an error matching os.ErrNotExist", err)
	}
}

func TestCheckPrivate(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o604, false}, {0o620, false}, {0o644, false}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := CheckPrivate(path); (err == nil) != tc.ok {
				t.Errorf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	a, b := newIdentity(t, "a"), newIdentity(t, "a")
	if first, again := a.Fingerprint(), a.Fingerprint(); first != again {
		t.Error("fingerprint changes between calls")
	}
	if !ValidFingerprint(a.Fingerprint()) {
		t.Errorf("fingerprint %q is not 64 lowercase hex digits", a.Fingerprint())
	}
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("two identities with the same name share a fingerprint")
	}
	leaf := a.Certificate().Leaf
	if leaf == nil || leaf.Subject.CommonName != "a" {
		t.Fatalf("certificate: got %+v, want CN a", leaf)
	}
	if got := spkiFingerprint(leaf); got != a.Fingerprint() {
		t.Errorf("fingerprint of the certificate: got %q, want %q", got, a.Fingerprint())
	}
	if now := time.Now(); !leaf.NotBefore.Before(now.Add(-30*time.Minute)) || !leaf.NotAfter.After(now.Add(300*24*time.Hour)) {
		t.Errorf("validity %v – %v: want back-dated and no earlier end than a year from now", leaf.NotBefore, leaf.NotAfter)
	}
}

func TestValidFingerprint(t *testing.T) {
	good := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{good, true},
		{"", false},
		{good[:63], false},
		{good + "0", false},
		{strings.ToUpper(good), false},
		{good[:63] + "g", false},
	} {
		if got := ValidFingerprint(tc.in); got != tc.want {
			t.Errorf("ValidFingerprint(%q): got %v, want %v", tc.in, got, tc.want)
		}
	}
}

// handshake runs a TLS handshake between client and server configs over a
// real TCP connection on 127.0.0.1, then sends one message from the client.
// It returns the client's and the server's errors; the server's covers the
// handshake and reading the message, which is where a TLS 1.3 server
// rejects a client certificate. version is the negotiated one.
func handshake(t *testing.T, client, server *tls.Config) (clientErr, serverErr error, version uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	srvDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvDone <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if err := tc.HandshakeContext(ctx); err != nil {
			srvDone <- err
			return
		}
		b := make([]byte, 5)
		if _, err := io.ReadFull(tc, b); err != nil {
			srvDone <- err
			return
		}
		_, err = tc.Write([]byte("ok"))
		srvDone <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	clientErr = tc.HandshakeContext(ctx)
	if clientErr == nil {
		version = tc.ConnectionState().Version
		_, clientErr = tc.Write([]byte("hello"))
		if clientErr == nil {
			// Rejection of our certificate arrives here in TLS 1.3.
			_, clientErr = io.ReadFull(tc, make([]byte, 2))
		}
	}
	_ = c.Close()
	return clientErr, <-srvDone, version
}

func TestMutualTLS(t *testing.T) {
	srv, cli, stranger := newIdentity(t, "server"), newIdentity(t, "client"), newIdentity(t, "stranger")
	members := map[string]bool{srv.Fingerprint(): true, cli.Fingerprint(): true}
	isMember := func(fp string) bool { return members[fp] }
	noCert := ClientConfig(cli, srv.Fingerprint())
	noCert.Certificates = nil

	for _, tc := range []handshakeCase{
		{"members", ClientConfig(cli, srv.Fingerprint()), ServerConfig(srv, isMember), true, true},
		{"client pins another fingerprint", ClientConfig(cli, stranger.Fingerprint()), ServerConfig(srv, isMember), false, false},
		{"client pins nothing", ClientConfig(cli, ""), ServerConfig(srv, isMember), false, false},
		{"server is a stranger", ClientConfig(cli, srv.Fingerprint()), ServerConfig(stranger, isMember), false, false},
		{"client has no certificate", noCert, ServerConfig(srv, isMember), false, false},
		{"client is a stranger", ClientConfig(stranger, srv.Fingerprint()), ServerConfig(srv, isMember), false, false},
		{"nil allowed", ClientConfig(cli, srv.Fingerprint()), ServerConfig(srv, nil), false, false},
		{"client offers only TLS 1.2", func() *tls.Config {
			c := ClientConfig(cli, srv.Fingerprint())
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(), ServerConfig(srv, isMember), false, false},
	} {
		runHandshake(t, tc)
	}
}

func TestConfigsAreTLS13(t *testing.T) {
	id := newIdentity(t, "x")
	for name, c := range map[string]*tls.Config{
		"client": ClientConfig(id, id.Fingerprint()),
		"server": ServerConfig(id, func(string) bool { return true }),
	} {
		if c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13 {
			t.Errorf("%s: versions %#x-%#x, want TLS 1.3 only", name, c.MinVersion, c.MaxVersion)
		}
	}
	// Tickets are on: TestResumeRefused shows a resumed peer is checked.
	if c := ServerConfig(id, nil); c.ClientAuth != tls.RequireAnyClientCert || c.VerifyConnection == nil || c.VerifyPeerCertificate != nil {
		t.Errorf("server: ClientAuth %v, VerifyConnection set %v, VerifyPeerCertificate set %v; want RequireAnyClientCert, true, false (it is skipped on resumption)",
			c.ClientAuth, c.VerifyConnection != nil, c.VerifyPeerCertificate != nil)
	}
}

// handshakeCase is one row of a mutual-TLS table test.
type handshakeCase struct {
	name       string
	client     *tls.Config
	server     *tls.Config
	wantClient bool // the client's handshake and exchange succeed
	wantServer bool
}

// runHandshake runs one row: each side succeeds or fails as the row says,
// and a successful handshake is TLS 1.3.
func runHandshake(t *testing.T, tc handshakeCase) {
	t.Helper()
	t.Run(tc.name, func(t *testing.T) {
		cerr, serr, version := handshake(t, tc.client, tc.server)
		if (cerr == nil) != tc.wantClient {
			t.Errorf("client: got %v, want success=%v", cerr, tc.wantClient)
		}
		if (serr == nil) != tc.wantServer {
			t.Errorf("server: got %v, want success=%v", serr, tc.wantServer)
		}
		if cerr == nil && version != tls.VersionTLS13 {
			t.Errorf("version: got %#x, want TLS 1.3 (%#x)", version, tls.VersionTLS13)
		}
	})
}
