package trust

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// CA is the operator-CA mode: this node's certificate and key, issued by
// the operator, and the pool of CA certificates that a peer's certificate
// must chain to. Membership of the data plane is "holds a certificate
// signed by this CA": no host name or IP address is checked, because peers
// dial each other by IP and the CA is the whole trust decision. It is
// read-only after LoadCA and safe for concurrent use; the files are read
// once, so a renewed certificate takes a new LoadCA (a restart).
type CA struct {
	pool *x509.CertPool
	cert tls.Certificate
}

// LoadCA reads the operator's PEM files: caFile holds one or more CA
// certificates, certFile this node's certificate (optionally followed by
// intermediates), keyFile its private key (PKCS #8, PKCS #1 or SEC 1
// EC). The certificate must match the key and chain to a CA of caFile now,
// for any key usage; otherwise LoadCA fails. Errors name the file and what
// is wrong with it, never key material. Safe for concurrent use.
func LoadCA(caFile, certFile, keyFile string) (*CA, error) {
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
	ders := make([][]byte, len(chain))
	for i, c := range chain {
		ders[i] = c.Raw
	}
	return &CA{pool: pool, cert: tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}}, nil
}

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
// by IP). Session resumption is off (no ClientSessionCache), so every
// connection is verified afresh. Each call returns a new Config that the
// caller owns. Safe for concurrent use.
func (ca *CA) ClientConfig() *tls.Config {
	return clientTLS(ca.cert, func(cs tls.ConnectionState) error {
		if err := verifyChain(ca.pool, cs.PeerCertificates); err != nil {
			return fmt.Errorf("trust: server certificate: %w", err)
		}
		return nil
	})
}

// ServerConfig returns a TLS 1.3 server config that presents the
// operator's certificate, requires a client certificate, and accepts only
// one that chains to the CA (any key usage, no name check). Session
// tickets are off, so every connection is verified afresh. Each call
// returns a new Config that the caller owns. Safe for concurrent use.
func (ca *CA) ServerConfig() *tls.Config {
	// RequireAndVerifyClientCert would insist on the ClientAuth key usage;
	// verifyChain accepts any, like the client side.
	return serverTLS(ca.cert, func(cs tls.ConnectionState) error {
		if err := verifyChain(ca.pool, cs.PeerCertificates); err != nil {
			return fmt.Errorf("trust: client certificate: %w", err)
		}
		return nil
	})
}
