package health

import (
	"strconv"
	"strings"
	"testing"
)

var parseCheckTests = []struct {
	in      string
	want    Check
	wantErr bool
}{
	{in: "tcp", want: Check{Kind: KindTCP}},
	{in: "redis", want: Check{Kind: KindRedis}},
	{in: "none", want: Check{Kind: KindNone}},
	{in: "http", want: Check{Kind: KindHTTP, Path: "/"}},
	{in: "http:/", want: Check{Kind: KindHTTP, Path: "/"}},
	{in: "http:/healthz", want: Check{Kind: KindHTTP, Path: "/healthz"}},
	{in: "http:/status?full=1&x=%20", want: Check{Kind: KindHTTP, Path: "/status?full=1&x=%20"}},
	{in: "exec:true", want: Check{Kind: KindExec, Command: "true"}},
	{in: "exec:redis-cli -p 6379 ping | grep -q PONG", want: Check{Kind: KindExec, Command: "redis-cli -p 6379 ping | grep -q PONG"}},
	{in: "exec:a:b", want: Check{Kind: KindExec, Command: "a:b"}},

	{in: "", wantErr: true},
	{in: "TCP", wantErr: true},
	{in: "tcp:", wantErr: true},
	{in: "tcp:80", wantErr: true},
	{in: "redis:x", wantErr: true},
	{in: "none:", wantErr: true},
	{in: "http:", wantErr: true},
	{in: "http:healthz", wantErr: true},
	{in: "http:/a b", wantErr: true},
	{in: "http:/a\x00", wantErr: true},
	{in: "http:/caf\u00e9", wantErr: true},
	{in: "http:/%zz", wantErr: true},
	{in: "exec", wantErr: true},
	{in: "exec:", wantErr: true},
	{in: "exec:   ", wantErr: true},
	{in: "exec:true\x00", wantErr: true},
	{in: "grpc", wantErr: true},
	{in: " tcp", wantErr: true},
}

func TestParseCheck(t *testing.T) {
	for _, tc := range parseCheckTests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCheck(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseCheck(%q): got %+v, want an error", tc.in, got)
				}
				if !strings.Contains(err.Error(), strconv.Quote(tc.in)) || !strings.HasPrefix(err.Error(), "health: ") {
					t.Errorf("ParseCheck(%q): error %q does not start with health: and name the value", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCheck(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseCheck(%q): got %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestCheckString(t *testing.T) {
	tests := []struct {
		c    Check
		want string
	}{
		{Check{Kind: KindTCP}, "tcp"},
		{Check{Kind: KindRedis}, "redis"},
		{Check{Kind: KindNone}, "none"},
		{Check{Kind: KindHTTP, Path: "/"}, "http"},
		{Check{Kind: KindHTTP}, "http"},
		{Check{Kind: KindHTTP, Path: "/healthz?x=1"}, "http:/healthz?x=1"},
		{Check{Kind: KindExec, Command: "test -S /run/x.sock"}, "exec:test -S /run/x.sock"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.c.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParseCheck checks that ParseCheck never panics, that its errors name
// the input, and that String is its inverse.
func FuzzParseCheck(f *testing.F) {
	for _, tc := range parseCheckTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCheck(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("ParseCheck(%q): error %q does not name the value", s, err)
			}
			return
		}
		str := c.String()
		c2, err := ParseCheck(str)
		if err != nil {
			t.Fatalf("ParseCheck(%q) = %+v; ParseCheck(String() = %q): %v", s, c, str, err)
		}
		if c2 != c {
			t.Fatalf("round trip of %q through %q: got %+v, want %+v", s, str, c2, c)
		}
		if c2.String() != str {
			t.Fatalf("String not stable: got %q, want %q", c2.String(), str)
		}
	})
}
