package trust

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// testCluster is the cluster the test certificates name.
const testCluster = "lab"

// caWith builds a CA value of cluster testCluster that trusts trusted and
// presents a certificate for name that issuer signed, valid from notBefore
// to notAfter, with the given URI SANs. LoadCA would refuse such a
// certificate (another CA's, expired, not naming the cluster), so the test
// builds the value directly to see what a peer does with it.
func caWith(t *testing.T, trusted, issuer *testutil.CA, name string, notBefore, notAfter time.Time, uris ...string) *CA {
	t.Helper()
	certPEM, keyPEM := issuer.Issue(t, name, notBefore, notAfter, uris...)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(trusted.Cert)
	return &CA{pool: pool, cert: cert, cluster: testCluster, node: name}
}

func loadTestCA(t *testing.T, ca *testutil.CA, name string) *CA {
	t.Helper()
	caFile, certFile, keyFile := ca.WriteFilesURI(t, name, NodeURI(testCluster, name))
	c, err := LoadCA(caFile, certFile, keyFile, testCluster)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	return c
}

func TestCAMutualTLS(t *testing.T) {
	ours, theirs := testutil.NewCA(t, "ours"), testutil.NewCA(t, "theirs")
	srv, cli := loadTestCA(t, ours, "server"), loadTestCA(t, ours, "client")
	now := time.Now()
	from, until := now.Add(-time.Hour), now.Add(time.Hour)
	stranger := caWith(t, ours, theirs, "stranger", from, until, NodeURI(testCluster, "stranger"))
	expired := caWith(t, ours, ours, "expired", now.Add(-2*time.Hour), now.Add(-time.Hour), NodeURI(testCluster, "expired"))
	// Certificates the same CA issued for something else: no URI SAN, a
	// URI of another scheme, or one naming another cluster.
	noSAN := caWith(t, ours, ours, "server", from, until)
	otherScheme := caWith(t, ours, ours, "server", from, until, "spiffe://"+testCluster+"/server")
	otherCluster := caWith(t, ours, ours, "server", from, until, NodeURI("elsewhere", "server"))
	// URIs of other schemes do not count; but exactly one ambassador URI
	// is allowed: a certificate naming several nodes, or one node in two
	// clusters, would pass for each of them.
	otherURIToo := caWith(t, ours, ours, "server", from, until, "spiffe://"+testCluster+"/x", NodeURI(testCluster, "server"))
	twoClusters := caWith(t, ours, ours, "server", from, until, NodeURI("elsewhere", "server"), NodeURI(testCluster, "server"))
	twoNodes := caWith(t, ours, ours, "server", from, until, NodeURI(testCluster, "server"), NodeURI(testCluster, "other"))
	noCert := cli.ClientConfig("server")
	noCert.Certificates = nil

	for _, tc := range []handshakeCase{
		{"same CA", cli.ClientConfig("server"), srv.ServerConfig(), true, true},
		{"a URI of another scheme too", cli.ClientConfig("server"), otherURIToo.ServerConfig(), true, true},
		{"server names two nodes", cli.ClientConfig("server"), twoNodes.ServerConfig(), false, false},
		{"client names two nodes", twoNodes.ClientConfig("server"), srv.ServerConfig(), false, false},
		{"server names two clusters", cli.ClientConfig("server"), twoClusters.ServerConfig(), false, false},
		{"client names two clusters", twoClusters.ClientConfig("server"), srv.ServerConfig(), false, false},
		{"client from another CA", stranger.ClientConfig("server"), srv.ServerConfig(), false, false},
		{"server from another CA", cli.ClientConfig("stranger"), stranger.ServerConfig(), false, false},
		{"client expired", expired.ClientConfig("server"), srv.ServerConfig(), false, false},
		{"server expired", cli.ClientConfig("expired"), expired.ServerConfig(), false, false},
		{"client has no certificate", noCert, srv.ServerConfig(), false, false},
		{"client without URI SAN", noSAN.ClientConfig("server"), srv.ServerConfig(), false, false},
		{"server without URI SAN", cli.ClientConfig("server"), noSAN.ServerConfig(), false, false},
		{"client URI of another scheme", otherScheme.ClientConfig("server"), srv.ServerConfig(), false, false},
		{"server URI of another scheme", cli.ClientConfig("server"), otherScheme.ServerConfig(), false, false},
		{"client of another cluster", otherCluster.ClientConfig("server"), srv.ServerConfig(), false, false},
		{"server of another cluster", cli.ClientConfig("server"), otherCluster.ServerConfig(), false, false},
		{"server is another node than dialed", cli.ClientConfig("someone-else"), srv.ServerConfig(), false, false},
		{"client expects no node", cli.ClientConfig(""), srv.ServerConfig(), false, false},
		{"client offers only TLS 1.2", func() *tls.Config {
			c := cli.ClientConfig("server")
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return c
		}(), srv.ServerConfig(), false, false},
	} {
		runHandshake(t, tc)
	}
}

func TestNodeURI(t *testing.T) {
	if got, want := NodeURI("ambassador", "web-1"), "ambassador://ambassador/web-1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := NodeURI("lab", "n"), testutil.NodeURI("lab", "n"); got != want {
		t.Errorf("trust.NodeURI %q and testutil.NodeURI %q differ", got, want)
	}
}

func TestCAConfigs(t *testing.T) {
	ca := loadTestCA(t, testutil.NewCA(t, "ours"), "x")
	cc, sc := ca.ClientConfig("x"), ca.ServerConfig()
	for name, c := range map[string]*tls.Config{"client": cc, "server": sc} {
		if c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13 {
			t.Errorf("%s: versions %#x-%#x, want TLS 1.3 only", name, c.MinVersion, c.MaxVersion)
		}
		if len(c.Certificates) != 1 {
			t.Errorf("%s: %d certificates, want the operator's", name, len(c.Certificates))
		}
	}
	// Sessions are resumed only through ClientConfigs, and the peer check
	// is in VerifyConnection, which runs on resumption (TestResumeRefused).
	if cc.ClientSessionCache != nil {
		t.Error("client: ClientSessionCache is set, want it only from ClientConfigs")
	}
	for name, c := range map[string]*tls.Config{"client": cc, "server": sc} {
		if c.VerifyConnection == nil || c.VerifyPeerCertificate != nil {
			t.Errorf("%s: VerifyConnection set %v, VerifyPeerCertificate set %v; want true, false", name, c.VerifyConnection != nil, c.VerifyPeerCertificate != nil)
		}
	}
	if sc.ClientAuth != tls.RequireAnyClientCert {
		t.Errorf("server: ClientAuth %v, want RequireAnyClientCert", sc.ClientAuth)
	}
	if cc == ca.ClientConfig("x") || sc == ca.ServerConfig() {
		t.Error("configs are shared between calls, want a new one each")
	}
}

func TestLoadCA(t *testing.T) {
	ours, theirs := testutil.NewCA(t, "ours"), testutil.NewCA(t, "theirs")
	uri := NodeURI(testCluster, "node")
	caFile, certFile, keyFile := ours.WriteFilesURI(t, "node", uri)
	_, otherCert, otherKey := theirs.WriteFilesURI(t, "node", uri)
	_, _, ourOtherKey := ours.WriteFilesURI(t, "node2", NodeURI(testCluster, "node2"))
	_, noSANCert, noSANKey := ours.WriteFilesURI(t, "nosan")
	_, elsewhereCert, elsewhereKey := ours.WriteFilesURI(t, "elsewhere", NodeURI("elsewhere", "node"))
	_, twoCert, twoKey := ours.WriteFilesURI(t, "two", NodeURI(testCluster, "a"), NodeURI(testCluster, "b"))
	_, twoClCert, twoClKey := ours.WriteFilesURI(t, "twocl", NodeURI("elsewhere", "node"), uri)
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
	expCert, expKey := ours.Issue(t, "old", now.Add(-2*time.Hour), now.Add(-time.Hour), uri)
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
		{"cert without URI SAN", caFile, noSANCert, noSANKey, "cert file " + noSANCert + " has no URI SAN ambassador://lab/NODE"},
		{"cert for another cluster", caFile, elsewhereCert, elsewhereKey, "cert file " + elsewhereCert + " has no URI SAN"},
		{"cert naming two nodes", caFile, twoCert, twoKey, "cert file " + twoCert + " names 2 nodes"},
		{"cert naming the node in two clusters", caFile, twoClCert, twoClKey, "cert file " + twoClCert + " names 2 nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := LoadCA(tc.ca, tc.cert, tc.key, testCluster)
			if tc.wantErr == "" {
				if err != nil || ca == nil {
					t.Fatalf("got %v, want a CA", err)
				}
				if ca.Node() != "node" {
					t.Errorf("Node: got %q, want %q", ca.Node(), "node")
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

// TestLoadCAEncryptedKey: a key file that openssl encrypted in the legacy
// PEM way (openssl ec/genrsa -aes256: Proc-Type 4,ENCRYPTED and DEK-Info
// headers over the block's usual type) is refused with an error that says
// so, not with the ASN.1 parser's complaint about its ciphertext.
func TestLoadCAEncryptedKey(t *testing.T) {
	ca := testutil.NewCA(t, "ours")
	caFile, certFile, _ := ca.WriteFilesURI(t, "node", NodeURI(testCluster, "node"))
	ciphertext := make([]byte, 128)
	_, _ = rand.Read(ciphertext)
	for _, typ := range []string{"EC PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY"} {
		t.Run(typ, func(t *testing.T) {
			keyFile := filepath.Join(t.TempDir(), "node.key")
			b := pem.EncodeToMemory(&pem.Block{Type: typ, Headers: map[string]string{
				"Proc-Type": "4,ENCRYPTED",
				"DEK-Info":  "AES-256-CBC,00112233445566778899AABBCCDDEEFF",
			}, Bytes: ciphertext})
			if err := os.WriteFile(keyFile, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadCA(caFile, certFile, keyFile, testCluster)
			if err == nil || !strings.Contains(err.Error(), keyFile) || !strings.Contains(err.Error(), "encrypted") {
				t.Fatalf("got %v, want an error naming %s and saying the key is encrypted", err, keyFile)
			}
		})
	}
}
