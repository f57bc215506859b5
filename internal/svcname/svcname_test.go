package svcname

import (
	"regexp"
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
