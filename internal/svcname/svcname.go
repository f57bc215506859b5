// Package svcname is the one rule for a service name, shared by every
// package that handles one: the flags and the control API where a name
// enters, the gossip catalog where a peer's name enters, discovery, the
// data plane's handoff header, credentials, checks and upstreams. A name one
// layer accepted and the next rejected used to become a listener whose
// every dial failed; with one validator that cannot happen.
//
// The rule is RFC 6335 §5.1: 1 to 15 ASCII letters, digits and hyphens, at
// least one letter, no hyphen at the start or end and no two hyphens in a
// row. It keeps a name usable as a DNS-SD service label (_NAME._tcp) and in
// the handoff header. On top of RFC 6335, a name must not read as an IPv4
// address: glibc's resolver (inet_aton, tried by getaddrinfo before
// /etc/hosts and NSS) takes "10", "017" and "0x10" for 0.0.0.10, 0.0.0.15
// and 0.0.0.16, so a service of that name would never resolve by name
// through --hosts. The letter rule refuses the all-digit forms and the
// character set the dotted ones; Check also refuses a C hexadecimal
// constant (0x or 0X and hex digits, whatever its value: glibc refuses one
// above 2^32 but older resolvers wrap it). Names compare case-insensitively (RFC 6335 §5.1);
// Check does not change the case, callers that key by name lower-case it.
//
// One type, one validator: a service name is held as a Name, and Parse
// (which applies Check) is the only way to make one from outside input:
// the flags and the config file (main, mesh's Parse* functions, creds), the
// control API (mesh: the announce body through ParseAnnounce, the drain
// path through Parse), a peer's gossip record (its JSON decoding calls
// UnmarshalText, and gossip drops a record with a bad name whole) and the
// handoff header (forward). The name fields and parameters of every
// package are Names: mesh.Announce, Forward, Upstream and the keys of
// Config.Balance and Config.Checks, gossip.Service, forward.Backend and
// the data port's lookup, announce.Service, creds.Spec, health.Target and
// its callback, and upstream's watch key. So the compiler refuses a plain
// string variable there. Constants in code and tests convert implicitly
// (Go's untyped constants); Must is for names computed in tests. A
// conversion Name(s) from a variable is the one way around Parse, and
// TestNoConversions fails on any in non-test code (tests use it to reach
// the guards that still catch an invalid Name, such as forward's).
//
// The zero Name ("") is not a valid name: a field that was never set.
// Functions that take a Name from a struct still reject "" where it
// matters (Valid).
//
// The package uses only the standard library so that forward, which may
// import nothing of ours with dependencies, can use it too.
package svcname

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLen is the longest valid name, in bytes (RFC 6335 §5.1).
const MaxLen = 15

// Check reports whether s is a valid service name; see the package comment
// for the rule. It does not allocate for a valid name and is safe for
// concurrent use.
func Check(s string) error {
	if s == "" {
		return errors.New("service name is empty")
	}
	if len(s) > MaxLen {
		return fmt.Errorf("service name %q is longer than %d characters", s, MaxLen)
	}
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			letter = true
		case '0' <= c && c <= '9':
		case c == '-':
			if i == 0 || i == len(s)-1 {
				return fmt.Errorf("service name %q starts or ends with a hyphen", s)
			}
			if s[i-1] == '-' {
				return fmt.Errorf("service name %q has two hyphens in a row", s)
			}
		default:
			return fmt.Errorf("service name %q: character %q not allowed (letters, digits, hyphens)", s, c)
		}
	}
	if !letter {
		return fmt.Errorf("service name %q has no letter: resolvers read an all-digit name as an IPv4 address", s)
	}
	if hexNumber(s) {
		return fmt.Errorf("service name %q is a hexadecimal number: resolvers read it as an IPv4 address, so it would never resolve by name", s)
	}
	return nil
}

// hexNumber reports whether s is 0x or 0X followed by one or more hex
// digits, a number to inet_aton.
func hexNumber(s string) bool {
	if len(s) < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') {
		return false
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Valid reports whether Check accepts s.
func Valid(s string) bool { return Check(s) == nil }

// Name is a service name that passed Check: the type every package uses for
// one. Make one with Parse; see the package comment.
type Name string

// Parse returns s as a Name if Check accepts it, and Check's error if not.
// It keeps the case of s; see Lower.
func Parse(s string) (Name, error) {
	if err := Check(s); err != nil {
		return "", err
	}
	return Name(s), nil
}

// Must is Parse for names known to be valid, such as those built in tests;
// it panics on an invalid one.
func Must(s string) Name {
	n, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return n
}

// String returns the name as a string.
func (n Name) String() string { return string(n) }

// Valid reports whether n is a valid name: false for the zero Name, or for
// one made by a conversion around Parse.
func (n Name) Valid() bool { return Valid(string(n)) }

// Lower returns n in lower case, the form callers key names by (names
// compare case-insensitively). Lower-casing keeps a valid name valid.
func (n Name) Lower() Name { return Name(strings.ToLower(string(n))) }

// UnmarshalText parses text with Parse, so that a JSON document (the
// control API, a gossip record, a config file) cannot carry an invalid
// name into a Name field.
func (n *Name) UnmarshalText(text []byte) error {
	v, err := Parse(string(text))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// MarshalText returns the name; the pair with UnmarshalText.
func (n Name) MarshalText() ([]byte, error) { return []byte(n), nil }
