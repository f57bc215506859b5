package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throw-away certificate authority for tests: an ECDSA P-256 key
// and a self-signed CA certificate valid from an hour ago for a day.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte // Cert, PEM-encoded
}

// NewCA makes a CA named name. It fails the test on error.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testutil: create CA %q: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testutil: parse CA %q: %v", name, err)
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue signs a leaf certificate for name, valid from notBefore to
// notAfter, with the given URI SANs (for the operator-CA mode,
// ambassador://CLUSTER/NODE: see NodeURI), no host names and no extended
// key usage (the operator-CA mode accepts any). It returns the certificate
// and its PKCS #8 key, both PEM-encoded. A URI that does not parse fails
// the test.
func (ca *CA) Issue(t testing.TB, name string, notBefore, notAfter time.Time, uris ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("testutil: issue %q: URI SAN: %v", name, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("testutil: issue %q: %v", name, err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testutil: marshal key of %q: %v", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}

// NodeURI is the URI SAN that names node in cluster in the operator-CA
// mode, ambassador://CLUSTER/NODE. (trust.NodeURI is the real one; this
// copy keeps testutil free of the packages it helps test.)
func NodeURI(cluster, node string) string { return "ambassador://" + cluster + "/" + node }

// WriteFiles issues a certificate for node name of the default cluster
// ("ambassador": URI SAN ambassador://ambassador/NAME), valid from an hour
// ago for a day, and writes the CA, the certificate and its key (mode
// 0600) to a new temporary directory. It returns the three paths.
func (ca *CA) WriteFiles(t testing.TB, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	return ca.WriteFilesURI(t, name, NodeURI("ambassador", name))
}

// WriteFilesURI is WriteFiles with the certificate's URI SANs given:
// none, another cluster's, several.
func (ca *CA) WriteFilesURI(t testing.TB, name string, uris ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	now := time.Now()
	certPEM, keyPEM := ca.Issue(t, name, now.Add(-time.Hour), now.Add(24*time.Hour), uris...)
	dir := t.TempDir()
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	for _, f := range []struct {
		path string
		b    []byte
	}{{caFile, ca.PEM}, {certFile, certPEM}, {keyFile, keyPEM}} {
		if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testutil: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testutil: serial: %v", err)
	}
	return s
}
