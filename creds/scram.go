package creds

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// scramMechanism is the only SASL mechanism we speak. SCRAM-SHA-256-PLUS
// needs channel binding to TLS, and we talk to the server in plaintext.
const scramMechanism = "SCRAM-SHA-256"

// maxSCRAMIterations bounds the PBKDF2 work a server can demand. Postgres
// uses 4096 by default; a million already costs a few hundred ms.
const maxSCRAMIterations = 1_000_000

// scramClient is the client half of SCRAM-SHA-256 (RFC 5802, RFC 7677)
// without channel binding, as Postgres uses it: the user name is sent
// empty ("n=") because Postgres takes it from the startup message.
//
// The password is used as given. RFC 5802 asks for SASLprep; Postgres
// applies it too but falls back to the raw bytes when normalisation fails.
// For ASCII passwords SASLprep changes nothing; a non-ASCII password must be
// stored in the file in its normalised (NFKC) form.
type scramClient struct {
	password string

	clientFirstBare string
	authMessage     string
	saltedPassword  []byte
}

// first returns the client-first-message.
func (c *scramClient) first() ([]byte, error) {
	nonce := make([]byte, 18)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	c.clientFirstBare = "n=,r=" + base64.StdEncoding.EncodeToString(nonce)
	return []byte("n,," + c.clientFirstBare), nil
}

// final takes the server-first-message and returns the
// client-final-message carrying the proof.
func (c *scramClient) final(serverFirst []byte) ([]byte, error) {
	attrs, err := scramAttrs(string(serverFirst), "r", "s", "i")
	if err != nil {
		return nil, fmt.Errorf("server-first-message: %w", err)
	}
	clientNonce := strings.TrimPrefix(c.clientFirstBare, "n=,r=")
	if !strings.HasPrefix(attrs["r"], clientNonce) || len(attrs["r"]) == len(clientNonce) {
		return nil, errors.New("server-first-message: server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil || len(salt) == 0 {
		return nil, errors.New("server-first-message: bad salt")
	}
	iter, err := strconv.Atoi(attrs["i"])
	if err != nil || iter < 1 || iter > maxSCRAMIterations {
		return nil, fmt.Errorf("server-first-message: iteration count not in 1..%d", maxSCRAMIterations)
	}
	c.saltedPassword, err = pbkdf2.Key(sha256.New, c.password, salt, iter, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("pbkdf2: %w", err)
	}
	// "biws" is base64("n,,"): the GS2 header, no channel binding.
	withoutProof := "c=biws,r=" + attrs["r"]
	c.authMessage = c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	clientKey := hmacSHA256(c.saltedPassword, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	proof := hmacSHA256(storedKey[:], c.authMessage)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verify checks the server-final-message, which proves the server knows
// the password too; without it a man in the middle could accept anything.
func (c *scramClient) verify(serverFinal []byte) error {
	if c.saltedPassword == nil {
		return errors.New("server-final-message before server-first-message")
	}
	if e, ok := strings.CutPrefix(string(serverFinal), "e="); ok {
		return fmt.Errorf("server-final-message: server error %q", sanitizeLine(e))
	}
	attrs, err := scramAttrs(string(serverFinal), "v")
	if err != nil {
		return fmt.Errorf("server-final-message: %w", err)
	}
	got, err := base64.StdEncoding.DecodeString(attrs["v"])
	if err != nil {
		return errors.New("server-final-message: bad verifier encoding")
	}
	want := hmacSHA256(hmacSHA256(c.saltedPassword, "Server Key"), c.authMessage)
	if !hmac.Equal(got, want) {
		return errors.New("server-final-message: server signature does not match")
	}
	return nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramAttrs splits "k=v,k=v" and checks that each wanted key is present.
// Unknown keys (extensions) are ignored; a mandatory extension "m=" is not
// something we support, so it is an error.
func scramAttrs(msg string, want ...string) (map[string]string, error) {
	attrs := make(map[string]string)
	for _, kv := range strings.Split(msg, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(k) != 1 {
			return nil, errors.New("malformed attribute")
		}
		if k == "m" {
			return nil, errors.New("unsupported mandatory extension")
		}
		if _, dup := attrs[k]; !dup {
			attrs[k] = v
		}
	}
	for _, k := range want {
		if attrs[k] == "" {
			return nil, fmt.Errorf("missing attribute %q", k)
		}
	}
	return attrs, nil
}
