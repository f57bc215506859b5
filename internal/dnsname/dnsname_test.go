package dnsname

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string // "" = valid
	}{
		{"db", ""},
		{"db.lab", ""},
		{"db.lab.", ""},
		{"_pg._tcp.lab", ""},
		{"DB-1.Lab", ""},
		{"10.0.0.lab", ""},
		{strings.Repeat("a", 63) + ".lab", ""},
		{"", "not a valid DNS name"},
		{".", "not a valid DNS name"},
		{strings.Repeat("a.", 127) + "ab", "not a valid DNS name"},
		{"10.0.0.300", "its last label is all digits"},
		{"10.0.7", "its last label is all digits"},
		{"1234", "its last label is all digits"},
		{"db..lab", "bad label length"},
		{strings.Repeat("a", 64) + ".lab", "bad label length"},
		{"db lab", "bad character ' '"},
		{"db/lab", "bad character '/'"},
		{"dö.lab", "bad character"},
	} {
		err := Check(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Check(%q): %v, want valid", tc.in, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "\""+tc.in+"\"")):
			t.Errorf("Check(%q): %v, want an error quoting it with %q", tc.in, err, tc.wantErr)
		}
	}
}
