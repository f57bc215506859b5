package trust

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// CA is the operator-CA mode: this node's certificate and key, issued by
// the operator, and the pool of CA certificates that a peer's certificate
// must chain to. A chain is not enough: the CA may issue certificates for
// other purposes too, so a peer's certificate must also name this cluster
// in a URI SAN ambassador://CLUSTER/NODE (see NodeURI), and a server the
// node it was dialed as. No host name or IP address is checked, because
// peers dial each other by IP. It is read-only after LoadCA and safe for
// concurrent use; the files are read once, so a renewed certificate takes
// a new LoadCA (a restart).
type CA struct {
	pool    *x509.CertPool
	cert    tls.Certificate
	cluster string // the cluster every peer's certificate must name
	node    string // the node this node's certificate names
}

// uriScheme is the scheme of the URI SAN that names a node's cluster.
const uriScheme = "ambassador"

// NodeURI returns the URI SAN a node's certificate carries in the
// operator-CA mode: ambassador://CLUSTER/NODE.
func NodeURI(cluster, node string) string {
	return (&url.URL{Scheme: uriScheme, Host: cluster, Path: "/" + node}).String()
}

// certNode returns the node of cluster that c names in its URI SAN
// ambassador://CLUSTER/NODE. c must carry exactly one URI of the
// ambassador scheme: a certificate naming several nodes (or one node in
// several clusters) would let its holder pass for each of them. URIs of
// other schemes are ignored.
func certNode(c *x509.Certificate, cluster string) (string, error) {
	var ours []string
	var node string
	for _, u := range c.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		ours = append(ours, u.String())
		n, ok := strings.CutPrefix(u.Path, "/")
		if u.Host == cluster && ok && n != "" && !strings.Contains(n, "/") &&
			u.User == nil && u.RawQuery == "" && u.Fragment == "" {
			node = n
		}
	}
	switch {
	case len(ours) > 1:
		return "", fmt.Errorf("names %d nodes (%s), want one", len(ours), strings.Join(ours, ", "))
	case node == "":
		return "", fmt.Errorf("has no URI SAN %s: issued for something else or another cluster", NodeURI(cluster, "NODE"))
	}
	return node, nil
}

// checkPeer checks a peer's certificate chain: it chains to pool, and its
// leaf names cluster (and node, unless node is "") in its one ambassador
// URI SAN (certNode).
func checkPeer(pool *x509.CertPool, chain []*x509.Certificate, cluster, node string) error {
	if err := verifyChain(pool, chain); err != nil {
		return err
	}
	got, err := certNode(chain[0], cluster)
	switch {
	case err != nil:
		return fmt.Errorf("certificate %w", err)
	case node != "" && got != node:
		return fmt.Errorf("certificate names node %q, want %q (%s)", got, node, NodeURI(cluster, node))
	}
	return nil
}

// LoadCA reads the operator's PEM files: caFile holds one or more CA
// certificates, certFile this node's certificate (optionally followed by
// intermediates), keyFile its private key (PKCS #8, PKCS #1 or SEC 1
// EC). The certificate must match the key, chain to a CA of caFile now,
// for any key usage, and carry exactly one URI SAN of the ambassador
// scheme, ambassador://CLUSTER/NODE naming cluster (Node returns NODE), as
// peers demand (certNode); otherwise LoadCA fails.
// Errors name the file and what is wrong with it, never key material.
// Safe for concurrent use.
func LoadCA(caFile, certFile, keyFile, cluster string) (*CA, error) {
	roots, err := readCerts(caFile, "CA file")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	chain, err := readCerts(certFile, "cert file")
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("trust: key file %s does not match the certificate in cert file %s", keyFile, certFile)
	}
	if err := verifyChain(pool, chain); err != nil {
		return nil, fmt.Errorf("trust: cert file %s is not valid under CA file %s: %w", certFile, caFile, err)
	}
	node, err := certNode(leaf, cluster)
	if err != nil {
		return nil, fmt.Errorf("trust: cert file %s %w (cluster %q)", certFile, err, cluster)
	}
	ders := make([][]byte, len(chain))
	for i, c := range chain {
		ders[i] = c.Raw
	}
	return &CA{pool: pool, cert: tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}, cluster: cluster, node: node}, nil
}

// Node returns the node name this node's certificate names in its URI SAN.
func (ca *CA) Node() string { return ca.node }

// readCerts parses every CERTIFICATE block of a PEM file; what names the
// file's role in errors. Other block types are skipped; a file with no
// certificate is an error.
func readCerts(path, what string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: read %s: %w", what, err)
	}
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust: %s %s: PEM block %d: %w", what, path, n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("trust: %s %s holds no PEM certificate", what, path)
	}
	return certs, nil
}

// readKey parses the first PRIVATE KEY block of a PEM file. Errors carry
// no bytes of the file: the x509 parsers' messages name only the format.
func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: read key file: %w", err)
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("trust: key file %s holds no PEM private key", path)
		}
		if !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			continue
		}
		// Legacy PEM encryption (openssl ec/genrsa -aes256) keeps the
		// block's type and marks it only in a header; parsed as a key,
		// its ciphertext fails with an ASN.1 error that does not say why.
		if strings.Contains(blk.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("trust: key file %s: %s is encrypted (Proc-Type %s); want an unencrypted PKCS #8, PKCS #1 or EC key", path, blk.Type, blk.Headers["Proc-Type"])
		}
		var key any
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		default:
			return nil, fmt.Errorf("trust: key file %s: %s is not supported (want an unencrypted PKCS #8, PKCS #1 or EC key)", path, blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("trust: key file %s: %w", path, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("trust: key file %s: %T cannot sign", path, key)
		}
		return s, nil
	}
}

// verifyChain checks that chain[0] chains to pool now, through the other
// certificates of chain, for any key usage and any name.
func verifyChain(pool *x509.CertPool, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// ClientConfig returns a TLS 1.3 client config that presents the
// operator's certificate and accepts only a server whose certificate
// chains to the CA (any key usage, no host name check: peers are dialed
// by IP) and names node of this cluster (ambassador://CLUSTER/NODE).
// The config has no ClientSessionCache; one that resumes sessions is what
// ClientConfigs hands out, and the certificate is checked on a resumed
// session too. Each call returns a new Config that the caller owns.
// Safe for concurrent use.
func (ca *CA) ClientConfig(node string) *tls.Config {
	return clientTLS(ca.cert, func(cs tls.ConnectionState) error {
		if node == "" {
			return errors.New("trust: server certificate: no node to expect")
		}
		if err := checkPeer(ca.pool, cs.PeerCertificates, ca.cluster, node); err != nil {
			return fmt.Errorf("trust: server certificate: %w", err)
		}
		return nil
	})
}

// ServerConfig returns a TLS 1.3 server config that presents the
// operator's certificate, requires a client certificate, and accepts only
// one that chains to the CA (any key usage, no host name check) and names
// a node of this cluster (ambassador://CLUSTER/NODE). It issues session
// tickets; a resumed session's certificate is checked again. Each call
// returns a new Config that the caller owns and should share among
// connections: its session ticket keys live in it. Safe for concurrent
// use.
func (ca *CA) ServerConfig() *tls.Config {
	// RequireAndVerifyClientCert would insist on the ClientAuth key usage;
	// verifyChain accepts any, like the client side.
	return serverTLS(ca.cert, func(cs tls.ConnectionState) error {
		if err := checkPeer(ca.pool, cs.PeerCertificates, ca.cluster, ""); err != nil {
			return fmt.Errorf("trust: client certificate: %w", err)
		}
		return nil
	})
}
