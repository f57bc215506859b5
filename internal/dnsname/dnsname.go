// Package dnsname is the one rule for a host name given where an address
// is expected: the targets and listen addresses of --announce and
// --forward (mesh) and the names of --upstream specs (upstream). Two rules
// used to disagree: one accepted 10.0.0.300 as a host name and refused a
// trailing dot, the other the reverse.
//
// The rule: at most 253 bytes, an optional trailing dot, labels of 1 to 63
// ASCII letters, digits, '-' and '_' (SRV labels start with '_'), and a
// last label that is not all digits (RFC 1123 §2.1), so that an IPv4
// address with a typo (10.0.0.300, 10.0.7) is an error where it is typed
// rather than a name that DNS can only answer with NXDOMAIN at run time.
// Callers try netip.ParseAddr first: an IP is not a host name.
package dnsname

import (
	"fmt"
	"strings"
)

// Check reports whether s is a valid host name; the error quotes s.
func Check(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%q is not a valid DNS name", s)
	}
	if top := name[strings.LastIndexByte(name, '.')+1:]; strings.Trim(top, "0123456789") == "" {
		return fmt.Errorf("%q is neither an IP address nor a DNS name (its last label is all digits)", s)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a valid DNS name: bad label length", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a valid DNS name: bad character %q", s, c)
			}
		}
	}
	return nil
}
