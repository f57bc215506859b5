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
// the handoff header. Names compare case-insensitively (RFC 6335 §5.1);
// Parse does not change the case, callers that key by name lower-case it.
//
// The package uses only the standard library so that forward, which may
// import nothing of ours with dependencies, can use it too.
package svcname

import (
	"errors"
	"fmt"
)

// MaxLen is the longest valid name, in bytes (RFC 6335 §5.1).
const MaxLen = 15

// Name is a service name that passed Check. Convert a string with Parse;
// a Name built by conversion from an unchecked string has no guarantee.
type Name string

// String returns the name as given to Parse.
func (n Name) String() string { return string(n) }

// Parse checks s and returns it as a Name. The error says what is wrong and
// quotes s.
func Parse(s string) (Name, error) {
	if err := Check(s); err != nil {
		return "", err
	}
	return Name(s), nil
}

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
		return fmt.Errorf("service name %q has no letter", s)
	}
	return nil
}

// Valid reports whether Check accepts s.
func Valid(s string) bool { return Check(s) == nil }
