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
// Check does not change the case, callers that key by name lower-case it.
//
// One validator, not one type: the name fields (mesh.Announce.Name,
// gossip.Service.Name, the credentials spec, announce's and forward's
// routes) stay plain strings, and every place a name enters checks it with
// Check: the flags and the config file (main, mesh), the control API
// (mesh), a peer's gossip record (gossip's decode drops a record with a
// bad name whole), discovery (announce) and the handoff header (forward).
// A Name type would carry the guarantee in the type system, but retyping
// those fields touches every package and their tests at once, and a value
// converted from an unchecked string would carry no guarantee anyway; the
// entry checks are what keep a bad name out. (An unused Name type with
// Parse was removed for that reason.)
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
