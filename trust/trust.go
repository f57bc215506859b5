// Package trust holds what ambassador nodes need to trust each other. With a
// shared cluster key and no CA: the cluster key itself (parsing, generating,
// reading from a file), a per-process Identity (a fresh key pair and a
// self-signed certificate), and TLS 1.3 configs that authenticate a peer by
// its pinned certificate fingerprint. With an operator's CA: a CA and its
// TLS 1.3 configs.
//
// The cluster key encrypts and authenticates gossip; each node puts its
// Fingerprint in its gossiped record, so only a node holding the key can
// publish a fingerprint that peers pin. The data plane then needs no CA: a
// client dials a peer expecting the fingerprint the peer gossiped
// (ClientConfig), and a server accepts only clients whose fingerprint is a
// current member's (ServerConfig).
//
// An operator who runs a CA can use it instead (LoadCA): each node presents
// a certificate the CA signed that names its cluster and node in a URI SAN
// ambassador://CLUSTER/NODE, and a peer is trusted when its certificate
// chains to the CA and names the cluster (a server: also the node it was
// dialed as); host names and IPs are not checked (peers dial each other by
// IP). The cluster key still protects gossip.
//
// The package uses only the standard library and knows nothing about gossip
// or forwarding.
package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"
)

// Identity is this process's key pair and self-signed certificate. It is
// read-only after NewIdentity and safe for concurrent use.
type Identity struct {
	cert        tls.Certificate
	fingerprint string
}

// Certificate validity. Peers do not check the dates of a full handshake
// (the pinned key is what they trust), but crypto/tls does refuse to
// resume a session whose peer certificate has expired, on both sides. So
// the certificate never expires: NotAfter is 99991231235959Z, the value
// RFC 5280 (section 4.1.2.5) gives a certificate with no expiry. A
// shorter validity stopped resumption, silently, on a node that ran
// longer than it or whose clock jumped forward after NewIdentity (a host
// without a battery-backed clock, before NTP). The back-dating absorbs
// clock skew between hosts for other TLS tools that inspect the
// certificate.
var certNotAfter = time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC)

const certBackdate = time.Hour

// NewIdentity makes a fresh ECDSA P-256 key pair and a self-signed
// certificate for it with CommonName name. The private key never leaves
// the process. Safe for concurrent use; each call makes a new key.
func NewIdentity(name string) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("trust: generate key for %q: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("trust: certificate serial for %q: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              certNotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("trust: self-sign certificate for %q: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("trust: parse own certificate for %q: %w", name, err)
	}
	return &Identity{
		cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		fingerprint: spkiFingerprint(leaf),
	}, nil
}

// Fingerprint returns the identity's fingerprint: the lowercase hex SHA-256
// of the certificate's DER-encoded SubjectPublicKeyInfo, 64 characters.
//
// It hashes the public key rather than the whole certificate (as HPKP,
// RFC 7469, does): the TLS handshake proves possession of that key, and the
// fingerprint stays the same if the certificate is ever re-issued for the
// same key. Safe for concurrent use.
func (id *Identity) Fingerprint() string { return id.fingerprint }

// Certificate returns the identity's certificate and private key for a
// tls.Config. The caller must not modify the result. Safe for concurrent
// use.
func (id *Identity) Certificate() tls.Certificate { return id.cert }

// FingerprintLen is the length of a Fingerprint: hex of a SHA-256.
const FingerprintLen = 2 * sha256.Size

// ValidFingerprint reports whether s has the form of a Fingerprint: 64
// lowercase hex digits. Safe for concurrent use.
func ValidFingerprint(s string) bool {
	if len(s) != FingerprintLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func spkiFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ClientConfig returns a TLS 1.3 client config that presents id's
// certificate and accepts only a server presenting exactly one certificate
// whose fingerprint (see Identity.Fingerprint) equals wantFingerprint. The
// CA chain, the server name and the certificate dates are not checked: the
// pinned key is the trust anchor, and the handshake proves the server holds
// it. An empty wantFingerprint matches no server. The config has no
// ClientSessionCache; one that resumes sessions is what ClientConfigs
// hands out, and the fingerprint is checked on a resumed session too. Each
// call returns a new Config that the caller owns.
func ClientConfig(id *Identity, wantFingerprint string) *tls.Config {
	return clientTLS(id.cert, func(cs tls.ConnectionState) error {
		fp, err := leafFingerprint(cs.PeerCertificates)
		if err != nil {
			return fmt.Errorf("trust: server: %w", err)
		}
		if wantFingerprint == "" || subtle.ConstantTimeCompare([]byte(fp), []byte(wantFingerprint)) != 1 {
			return fmt.Errorf("trust: server fingerprint %s is not the expected %s", fp, wantFingerprint)
		}
		return nil
	})
}

// ServerConfig returns a TLS 1.3 server config that presents id's
// certificate, requires a client certificate, and accepts only a client
// presenting exactly one certificate whose fingerprint passes allowed.
// allowed is called during every handshake, a resumed one too, from the
// connection's goroutine, possibly concurrently; it must be safe for
// concurrent use and must not block. The config issues session tickets,
// but a client that was allowed once and resumes after allowed starts
// refusing it is refused. The caller owns the returned Config and should
// share it among connections: its session ticket keys live in it.
func ServerConfig(id *Identity, allowed func(fingerprint string) bool) *tls.Config {
	return serverTLS(id.cert, func(cs tls.ConnectionState) error {
		fp, err := leafFingerprint(cs.PeerCertificates)
		if err != nil {
			return fmt.Errorf("trust: client: %w", err)
		}
		if allowed == nil || !allowed(fp) {
			return fmt.Errorf("trust: client fingerprint %s is not a member's", fp)
		}
		return nil
	})
}

// clientTLS and serverTLS hold what every data-plane TLS config shares:
// TLS 1.3 only, this node's certificate, and the peer judged by verify
// alone. crypto/tls's own checks of the server name, the chain and the key
// usage are off (InsecureSkipVerify, RequireAnyClientCert): peers are
// dialed by IP and verify knows what to trust.
//
// Sessions may be resumed (TLS 1.3 PSK with a fresh ECDHE exchange), which
// skips the certificate signatures of a full handshake. A resumed session
// carries the peer's certificates from its first handshake, and verify
// still judges them: it goes in VerifyConnection, which crypto/tls calls on
// resumed sessions too, never in VerifyPeerCertificate, which it does not.
// So a peer that stopped being trusted (a node no longer a member, another
// expected fingerprint or node) cannot come back on an old session.
//
// Records are always full size (DynamicRecordSizingDisabled): the peer is
// another ambassador on the LAN, not a browser waiting for its first
// bytes, and small first records only cost writes.
func clientTLS(cert tls.Certificate, verify func(tls.ConnectionState) error) *tls.Config {
	return &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		MaxVersion:                  tls.VersionTLS13,
		Certificates:                []tls.Certificate{cert},
		InsecureSkipVerify:          true,
		VerifyConnection:            verify,
		DynamicRecordSizingDisabled: true,
	}
}

func serverTLS(cert tls.Certificate, verify func(tls.ConnectionState) error) *tls.Config {
	return &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		MaxVersion:                  tls.VersionTLS13,
		Certificates:                []tls.Certificate{cert},
		ClientAuth:                  tls.RequireAnyClientCert,
		VerifyConnection:            verify,
		DynamicRecordSizingDisabled: true,
	}
}

// leafFingerprint returns the fingerprint of the only certificate in certs.
func leafFingerprint(certs []*x509.Certificate) (string, error) {
	switch len(certs) {
	case 0:
		return "", errors.New("no certificate")
	case 1:
		return spkiFingerprint(certs[0]), nil
	}
	return "", fmt.Errorf("%d certificates, want exactly 1", len(certs))
}

// Key sizes memberlist accepts: AES-128, AES-192 and AES-256.
var keySizes = [...]int{16, 24, 32}

// ParseKey decodes a cluster key: standard base64, with or without
// padding, of exactly 16, 24 or 32 bytes; surrounding white space is
// ignored. Errors name the decoded length but never the key. Safe for
// concurrent use.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("trust: key is empty")
	}
	enc := base64.RawStdEncoding
	if strings.HasSuffix(s, "=") {
		enc = base64.StdEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		// A CorruptInputError names only an offset, not the input.
		return nil, fmt.Errorf("trust: key is not base64: %w", err)
	}
	for _, n := range keySizes {
		if len(b) == n {
			return b, nil
		}
	}
	return nil, fmt.Errorf("trust: key is %d bytes, want 16, 24 or 32", len(b))
}

// GenerateKey returns a new random 32-byte cluster key, base64-encoded
// with padding, for "ambassador keygen". Safe for concurrent use.
func GenerateKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.StdEncoding.EncodeToString(b)
}

// ReadKeyFile reads cluster keys from path, one per line; blank lines and
// lines starting with # are skipped, and surrounding white space is
// trimmed. The first key is the one that encrypts. Every key must pass
// ParseKey; errors name the file and line but never a key. A file with no
// key is an error. It does not check the file's permissions; see
// CheckPrivate.
func ReadKeyFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: read key file: %w", err)
	}
	var keys []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := ParseKey(line); err != nil {
			return nil, fmt.Errorf("trust: key file %s line %d: %w", path, i+1, err)
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("trust: key file %s holds no key", path)
	}
	return keys, nil
}

// CheckPrivate returns an error when the file at path grants any
// permission to group or others (mode & 0o077, the rule ssh applies to
// private keys), or cannot be examined. The caller decides whether that is
// fatal; ambassador warns. Safe for concurrent use.
func CheckPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("trust: check key file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("trust: key file %s has mode %#o, open to group or others; want 0600", path, perm)
	}
	return nil
}
