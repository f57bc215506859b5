package forward

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

var handoffCases = []struct {
	name    string
	in      string
	want    string // service on success
	wantErr error  // errBadHeader, io.EOF, io.ErrUnexpectedEOF
}{
	{"ok", "AMB\x01\x03web", "web", nil},
	{"ok max length", "AMB\x01\x0f" + strings.Repeat("a", 15), strings.Repeat("a", 15), nil},
	{"ok hyphen digits", "AMB\x01\x07redis-6", "redis-6", nil},
	{"trailing bytes not consumed", "AMB\x01\x01xGET /", "x", nil},
	{"empty", "", "", io.EOF},
	{"short fixed", "AM", "", io.ErrUnexpectedEOF},
	{"short name", "AMB\x01\x05we", "", io.ErrUnexpectedEOF},
	{"bad magic", "XYZ\x01\x03web", "", errBadHeader},
	{"lower-case magic", "amb\x01\x03web", "", errBadHeader},
	{"bad version", "AMB\x02\x03web", "", errBadHeader},
	{"zero length", "AMB\x01\x00", "", errBadHeader},
	// Names follow svcname's RFC 6335 rule, the one the catalog and the
	// flags apply, not a looser one of the header's own.
	{"length 16", "AMB\x01\x10" + strings.Repeat("a", 16), "", errBadHeader},
	{"length 63", "AMB\x01\x3f" + strings.Repeat("a", 63), "", errBadHeader},
	{"digits only", "AMB\x01\x036379", "", errBadHeader},
	{"leading hyphen", "AMB\x01\x04-web", "", errBadHeader},
	{"two hyphens", "AMB\x01\x04w--b", "", errBadHeader},
	{"length 64", "AMB\x01\x40" + strings.Repeat("a", 64), "", errBadHeader},
	{"length 255", "AMB\x01\xff", "", errBadHeader},
	{"dot", "AMB\x01\x03a.b", "", errBadHeader},
	{"colon", "AMB\x01\x0910.0.0.1:", "", errBadHeader},
	{"nul", "AMB\x01\x03a\x00b", "", errBadHeader},
	{"utf8", "AMB\x01\x02\xc3\xa9", "", errBadHeader},
}

func TestReadHandoff(t *testing.T) {
	for _, tc := range handoffCases {
		t.Run(tc.name, func(t *testing.T) {
			r := strings.NewReader(tc.in)
			got, err := readHandoff(r)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err: got %v, want %v", err, tc.wantErr)
			}
			if got.String() != tc.want {
				t.Errorf("service: got %q, want %q", got, tc.want)
			}
			if err == nil {
				// Exactly the header is consumed, nothing past it.
				if rest := len(tc.in) - r.Len(); rest != handoffFixed+len(got) {
					t.Errorf("consumed %d bytes, want %d", rest, handoffFixed+len(got))
				}
			}
		})
	}
}

func TestAppendHandoff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		service string
		want    string
		wantErr bool
	}{
		{"ok", "web", "AMB\x01\x03web", false},
		{"empty", "", "", true},
		{"too long", strings.Repeat("a", 64), "", true},
		{"16 bytes", strings.Repeat("a", 16), "", true},
		{"digits only", "6379", "", true},
		{"dot", "a.b", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendHandoff(nil, svcname.Name(tc.service)) // a conversion, to test the guard
			if (err != nil) != tc.wantErr {
				t.Fatalf("err: got %v, want error %v", err, tc.wantErr)
			}
			if err == nil && string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseHandoff(f *testing.F) {
	for _, tc := range handoffCases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("web"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Parsing arbitrary bytes never panics, and a success re-encodes to
		// the bytes it consumed.
		if name, err := readHandoff(bytes.NewReader(data)); err == nil {
			enc, err := appendHandoff(nil, name)
			if err != nil {
				t.Fatalf("parsed %q but cannot encode it: %v", name, err)
			}
			if !bytes.HasPrefix(data, enc) {
				t.Fatalf("re-encoding %q gives %q, not a prefix of %q", name, enc, data)
			}
		}
		// Encoding a valid name and parsing it gives the name back.
		name := string(data)
		enc, err := appendHandoff(nil, svcname.Name(name))
		if err != nil {
			if svcname.Valid(name) {
				t.Fatalf("valid name %q: %v", name, err)
			}
			return
		}
		got, err := readHandoff(bytes.NewReader(enc))
		if err != nil || got.String() != name {
			t.Fatalf("round trip: got %q, %v, want %q", got, err, name)
		}
	})
}
