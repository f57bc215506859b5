package svcname

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var cases = []struct {
	name string
	ok   bool
}{
	{"redis", true},
	{"http", true},
	{"x", true},
	{"a1", true},
	{"1a", true},
	{"my-svc", true},
	{"a-b-c", true},
	{"REDIS", true},
	{"abcdefghijklmno", true}, // 15
	{"", false},
	{"abcdefghijklmnop", false}, // 16: what gossip (253 bytes) and the handoff (63) used to accept
	{"123", false},
	{"-redis", false},
	{"redis-", false},
	{"re--dis", false},
	{"re_dis", false},
	{"re.dis", false},
	{"re dis", false},
	{"ré", false},
	{"_redis", false},
	{"-", false},
	{"a\x00", false},
	// Names glibc's resolver (inet_aton, which getaddrinfo tries first)
	// reads as an IPv4 address: such a name never reaches /etc/hosts or
	// NSS. All-digit ones (decimal "10", octal "017") have no letter;
	// dotted ones ("0x7f.1") have a dot; hexadecimal is the form left.
	{"0x10", false},
	{"0X1F", false},
	{"0xdeadbeef", false},
	{"0xAbC", false},
	{"0x0", false},
	{"0x1234567890abc", false}, // 15 characters; above 2^32, refused all the same
	// Close to a number but not one, to inet_aton.
	{"0x", true},
	{"0xg", true},
	{"0x1g", true},
	{"0x10-web", true},
	{"00x10", true},
	{"x10", true},
	{"10x", true},
	{"1e3", true},
}

func TestCheck(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.name)
			if (err == nil) != tc.ok {
				t.Errorf("Check(%q) = %v, want ok %v", tc.name, err, tc.ok)
			}
			if Valid(tc.name) != tc.ok {
				t.Errorf("Valid(%q) = %v, want %v", tc.name, !tc.ok, tc.ok)
			}
			if !tc.ok && err != nil && !strings.Contains(err.Error(), "service name") {
				t.Errorf("Check(%q) error %q does not say it is about a service name", tc.name, err)
			}
			if inetAton(tc.name) && (err == nil || !strings.Contains(err.Error(), "IPv4 address")) {
				t.Errorf("Check(%q) = %v, want an error saying resolvers read it as an IPv4 address", tc.name, err)
			}
		})
	}
}

// rfc6335 is RFC 6335 §5.1 apart from length and the letter rule.
var rfc6335 = regexp.MustCompile(`^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$`)

// hexConst is a C hexadecimal constant, the form of number left once the
// letter rule and the character set have refused the others.
var hexConst = regexp.MustCompile(`^0[xX][0-9a-fA-F]+$`)

// inetAton reports whether glibc's inet_aton (resolv/inet_addr.c), which
// getaddrinfo and gethostbyname try before /etc/hosts and NSS, accepts s as
// an IPv4 address: one to four parts split by dots, each a C integer
// constant as strtoul(3) with base 0 reads it (0x hex, 0 octal, else
// decimal) starting with a digit, the last part filling the bytes left and
// the others one byte each. Trailing white space is allowed. It is the
// oracle the rule is tested against.
func inetAton(s string) bool {
	s = strings.TrimRight(s, " \t\n\v\f\r")
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return false
	}
	for i, p := range parts {
		if p == "" || p[0] < '0' || p[0] > '9' {
			return false
		}
		var v uint64
		var err error
		switch {
		case len(p) > 2 && (p[1] == 'x' || p[1] == 'X') && p[0] == '0':
			v, err = strconv.ParseUint(p[2:], 16, 64)
		case len(p) > 1 && p[0] == '0':
			v, err = strconv.ParseUint(p[1:], 8, 64)
		default:
			v, err = strconv.ParseUint(p, 10, 64)
		}
		if err != nil {
			return false
		}
		limit := uint64(0xff)
		if i == len(parts)-1 {
			limit = 0xffffffff >> (8 * uint(i))
		}
		if v > limit {
			return false
		}
	}
	return true
}

// TestInetAton checks the oracle itself on addresses glibc takes and names
// it does not.
func TestInetAton(t *testing.T) {
	for s, want := range map[string]bool{
		"10": true, "017": true, "0x10": true, "0X1f": true, "0x7f.1": true, "127.0.0.1": true,
		"1.2.3": true, "4294967295": true, "0xffffffff": true, "1.0xffffff": true, "10 ": true,
		"4294967296": false, "0x100000000": false, "1.2.3.4.5": false, "256.1": false, "08": false,
		"0x": false, "0xg": false, "x10": false, "redis": false, "": false, "1..2": false, "1.": false,
	} {
		if got := inetAton(s); got != want {
			t.Errorf("inetAton(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.name)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) <= MaxLen && rfc6335.MatchString(s) && strings.ContainsAny(strings.ToLower(s), "abcdefghijklmnopqrstuvwxyz") &&
			!hexConst.MatchString(s)
		err := Check(s)
		if (err == nil) != want {
			t.Errorf("Check(%q) = %v, want ok %v", s, err, want)
		}
		if err == nil && inetAton(s) {
			t.Errorf("Check(%q) accepts a name inet_aton reads as an IPv4 address", s)
		}
	})
}

// TestNoConversions fails on a conversion svcname.Name(x) in the non-test
// code of any package: it is the one way to make a Name without Parse, so
// an unchecked string could become a name there. Tests may convert, to
// reach the guards that catch such a Name (forward's appendHandoff).
func TestNoConversions(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "tools") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Name" {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "svcname" {
					t.Errorf("%s: conversion to svcname.Name: make a Name with svcname.Parse", fset.Position(call.Pos()))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range cases {
		n, err := Parse(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%q) = %q, %v, want ok %v", tc.name, n, err, tc.ok)
		}
		if tc.ok && (n.String() != tc.name || !n.Valid()) {
			t.Errorf("Parse(%q) = %q, valid %v", tc.name, n, n.Valid())
		}
		// JSON decoding goes through UnmarshalText, so a document cannot
		// carry a name Parse rejects.
		var v struct{ N Name }
		err = json.Unmarshal([]byte(`{"N":`+strconv.Quote(tc.name)+`}`), &v)
		if (err == nil) != tc.ok {
			t.Errorf("json decode %q: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if Name("").Valid() {
		t.Error("the zero Name is valid")
	}
	if got := Must("ReDis").Lower(); got != "redis" {
		t.Errorf("Lower: got %q", got)
	}
}
