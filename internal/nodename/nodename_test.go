package nodename

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string // "" = valid
	}{
		{"node-a", ""},
		{"lab.host_3", ""},
		{"DB1", ""},
		{strings.Repeat("n", 63), ""},
		{"", `"" must have 1 to 63 characters`},
		{strings.Repeat("n", 64), "must have 1 to 63 characters"},
		{"node a", `"node a" has ' ': use letters, digits, '-', '_' and '.'`},
		{"a\tb", `has '\t'`},
		{"a\nb", `has '\n'`},
		{"ev\x1b]0;x\x07", `has '\x1b'`},
		{"nöde", `has 'ö'`},
		{"a\xffb", `has '�'`},
	} {
		err := Check(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Check(%q): %v, want valid", tc.in, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Check(%q): %v, want an error with %q", tc.in, err, tc.wantErr)
		}
	}
}
