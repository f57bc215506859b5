// Package nodename is the one rule for a node name (and a cluster name),
// shared by the flags and the config file where this node's name enters
// (mesh) and gossip, where every other node's name enters: memberlist
// carries any string as a name, and a peer's name ends up in logs, in the
// tables of `ambassador members` (tab-separated text) and on the live page.
// A name with a tab, a newline or an escape sequence would forge rows or
// drive the operator's terminal, so gossip ignores a member whose name
// breaks the rule, as mesh refuses it for this node.
//
// The rule: 1 to 63 ASCII letters, digits, '-', '_' and '.', so that a
// name is usable as an mDNS instance name and, cleaned, as a DNS label.
package nodename

import "fmt"

// MaxLen is the longest name, in bytes: a DNS label's limit.
const MaxLen = 63

// Check reports whether s is a valid node name; the error quotes s and
// says what is wrong.
func Check(s string) error {
	if s == "" || len(s) > MaxLen {
		return fmt.Errorf("%q must have 1 to %d characters", s, MaxLen)
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("%q has %q: use letters, digits, '-', '_' and '.'", s, r)
		}
	}
	return nil
}
