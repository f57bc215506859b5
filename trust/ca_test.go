package trust

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// caWith builds a CA value that trusts trusted and presents a certificate
// for name that issuer signed, valid from notBefore to notAfter. LoadCA
// would refuse such a certificate (another CA's, or expired), so the test
// builds the value directly to see what a peer does with it.
func caWith(t *testing.T, trusted, issuer *testutil.CA, name string, notBefore, notAfter time.Time) *CA {
	t.Helper()
	certPEM, keyPEM := issuer.Issue(t, name, notBefore, notAfter)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(trusted.Cert)
	return &CA{pool: pool, cert: cert}
}

func loadTestCA(t *testing.T, ca *testutil.CA, name string) *CA {
	t.Helper()
	c, err := LoadCA(ca.WriteFiles(t, name))
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	return c
}

func TestCAMutualTLS(t *testing.T) {
	ours, theirs := testutil.NewCA(t, "ours"), testutil.NewCA(t, "theirs")
	srv, cli := loadTestCA(t, ours, "server"), loadTestCA(t, ours, "client")
	now := time.Now()
	stranger := caWith(t, ours, theirs, "stranger", now.Add(-time.Hour), now.Add(time.Hour))
	expired := caWith(t, ours, ours, "expired", now.Add(-2*time.Hour), now.Add(-time.Hour))
	noCert := cli.ClientConfig()
	noCert.Certificates = nil

	for _, tc := range []handshakeCase{
		{"same CA", cli.ClientConfig(), srv.ServerConfig(), true, true},
		{"client from another CA", stranger.ClientConfig(), srv.ServerConfig(), false, false},
		{"server from another CA", cli.ClientConfig(), stranger.ServerConfig(), false, false},
		{"client expired", expired.ClientConfig(), srv.ServerConfig(), false, false},
		{"server expired", cli.ClientConfig(), expired.ServerConfig(), false, false},
		{"client has no certificate", noCert, srv.ServerConfig(), false, false},
		{"client offers only TLS 1.2", func() *tls.Config {
			c := cli.ClientConfig()
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(), srv.ServerConfig(), false, false},
	} {
		runHandshake(t, tc)
	}
}

func TestCAConfigs(t *testing.T) {
	ca := loadTestCA(t, testutil.NewCA(t, "ours"), "x")
	cc, sc := ca.ClientConfig(), ca.ServerConfig()
	for name, c := range map[string]*tls.Config{"client": cc, "server": sc} {
		if c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13 {
			t.Errorf("%s: versions %#x-%#x, want TLS 1.3 only", name, c.MinVersion, c.MaxVersion)
		}
		if len(c.Certificates) != 1 {
			t.Errorf("%s: %d certificates, want the operator's", name, len(c.Certificates))
		}
	}
	if cc.ClientSessionCache != nil {
		t.Error("client: ClientSessionCache is set, want no resumption")
	}
	if sc.ClientAuth != tls.RequireAnyClientCert || !sc.SessionTicketsDisabled {
		t.Errorf("server: ClientAuth %v, SessionTicketsDisabled %v; want RequireAnyClientCert, true", sc.ClientAuth, sc.SessionTicketsDisabled)
	}
	if cc == ca.ClientConfig() || sc == ca.ServerConfig() {
		t.Error("configs are shared between calls, want a new one each")
	}
}

func TestLoadCA(t *testing.T) {
	ours, theirs := testutil.NewCA(t, "ours"), testutil.NewCA(t, "theirs")
	caFile, certFile, keyFile := ours.WriteFiles(t, "node")
	_, otherCert, otherKey := theirs.WriteFiles(t, "node")
	_, _, ourOtherKey := ours.WriteFiles(t, "node2")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	both := write("both.pem", append(append([]byte(nil), theirs.PEM...), ours.PEM...))
	empty := write("empty.pem", nil)
	garbage := write("garbage.pem", []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"))
	now := time.Now()
	expCert, expKey := ours.Issue(t, "old", now.Add(-2*time.Hour), now.Add(-time.Hour))
	expiredCert, expiredKey := write("old.pem", expCert), write("old.key", expKey)
	keyBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name          string
		ca, cert, key string
		wantErr       string // "" = success; otherwise substrings, |-separated
	}{
		{"good", caFile, certFile, keyFile, ""},
		{"CA file with several certificates", both, certFile, keyFile, ""},
		{"missing CA file", missing, certFile, keyFile, "read CA file|" + missing},
		{"missing cert file", caFile, missing, keyFile, "read cert file|" + missing},
		{"missing key file", caFile, certFile, missing, "read key file|" + missing},
		{"empty CA file", empty, certFile, keyFile, "CA file " + empty + " holds no PEM certificate"},
		{"key file holds no key", caFile, certFile, certFile, "key file " + certFile + " holds no PEM private key"},
		{"CA file not a certificate", garbage, certFile, keyFile, "CA file " + garbage + ": PEM block 1"},
		{"cert not from the CA", caFile, otherCert, otherKey, "cert file " + otherCert + " is not valid under CA file " + caFile},
		{"key not matching the cert", caFile, certFile, ourOtherKey, "key file " + ourOtherKey + " does not match the certificate in cert file " + certFile},
		{"expired cert", caFile, expiredCert, expiredKey, "cert file " + expiredCert + " is not valid|expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := LoadCA(tc.ca, tc.cert, tc.key)
			if tc.wantErr == "" {
				if err != nil || ca == nil {
					t.Fatalf("got %v, want a CA", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got a CA, want an error containing %q", tc.wantErr)
			}
			for _, want := range strings.Split(tc.wantErr, "|") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to contain %q", err, want)
				}
			}
			for _, line := range strings.Split(string(keyBytes), "\n") {
				if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
					t.Errorf("error %q repeats key material", err)
				}
			}
		})
	}
}
