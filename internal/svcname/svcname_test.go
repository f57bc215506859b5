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
		})
	}
}

// rfc6335 is RFC 6335 §5.1 apart from length and the letter rule.
var rfc6335 = regexp.MustCompile(`^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$`)

func FuzzCheck(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.name)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) <= MaxLen && rfc6335.MatchString(s) && strings.ContainsAny(strings.ToLower(s), "abcdefghijklmnopqrstuvwxyz")
		if err := Check(s); (err == nil) != want {
			t.Errorf("Check(%q) = %v, want ok %v", s, err, want)
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
