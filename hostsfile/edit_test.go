package hostsfile

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

var block = []string{Begin, note, "127.0.0.1\tredis", End}

func TestEdit(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		lines   []string
		want    string
		wantErr bool
	}{
		{name: "empty file", in: "", lines: block,
			want: "# BEGIN ambassador\n" + note + "\n127.0.0.1\tredis\n# END ambassador\n"},
		{name: "no block: appended", in: "127.0.0.1\tlocalhost\n::1 localhost\n", lines: block,
			want: "127.0.0.1\tlocalhost\n::1 localhost\n# BEGIN ambassador\n" + note + "\n127.0.0.1\tredis\n# END ambassador\n"},
		{name: "no trailing newline: one is added", in: "127.0.0.1 localhost", lines: block,
			want: "127.0.0.1 localhost\n# BEGIN ambassador\n" + note + "\n127.0.0.1\tredis\n# END ambassador\n"},
		{name: "block present: replaced", in: "a\n# BEGIN ambassador\n127.0.0.9 old\n# END ambassador\n", lines: block,
			want: "a\n# BEGIN ambassador\n" + note + "\n127.0.0.1\tredis\n# END ambassador\n"},
		{name: "block in the middle: the lines after it stay", in: "a  \n# BEGIN ambassador\nold\n# END ambassador\n\tb # comment\n\nc", lines: block,
			want: "a  \n# BEGIN ambassador\n" + note + "\n127.0.0.1\tredis\n# END ambassador\n\tb # comment\n\nc"},
		{name: "block in the middle: removed", in: "a\n# BEGIN ambassador\nold\n# END ambassador\nb\n", lines: nil,
			want: "a\nb\n"},
		{name: "no block, nothing to write: unchanged", in: "a\nb", lines: nil, want: "a\nb"},
		{name: "CRLF file: the block uses CRLF too", in: "a\r\n# BEGIN ambassador\r\nold\r\n# END ambassador\r\nb\r\n", lines: block,
			want: "a\r\n# BEGIN ambassador\r\n" + note + "\r\n127.0.0.1\tredis\r\n# END ambassador\r\nb\r\n"},
		{name: "CRLF file without block", in: "a\r\n", lines: block,
			want: "a\r\n# BEGIN ambassador\r\n" + note + "\r\n127.0.0.1\tredis\r\n# END ambassador\r\n"},
		{name: "markers with surrounding blanks count", in: "  # BEGIN ambassador \nold\n# END ambassador\t\n", lines: nil, want: ""},
		{name: "block at the end without newline", in: "a\n# BEGIN ambassador\nold\n# END ambassador", lines: block,
			want: "a\n# BEGIN ambassador\n" + note + "\n127.0.0.1\tredis\n# END ambassador\n"},
		{name: "similar comment is not a marker", in: "# BEGIN ambassadors\n", lines: nil, want: "# BEGIN ambassadors\n"},
		{name: "duplicate BEGIN", in: "# BEGIN ambassador\n# BEGIN ambassador\n# END ambassador\n", lines: block, wantErr: true},
		{name: "duplicate END", in: "# BEGIN ambassador\n# END ambassador\n# END ambassador\n", lines: block, wantErr: true},
		{name: "two blocks", in: "# BEGIN ambassador\n# END ambassador\n# BEGIN ambassador\n# END ambassador\n", lines: nil, wantErr: true},
		{name: "END before BEGIN", in: "# END ambassador\n# BEGIN ambassador\n", lines: block, wantErr: true},
		{name: "BEGIN without END", in: "a\n# BEGIN ambassador\nb\n", lines: block, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Edit([]byte(tt.in), tt.lines)
			if tt.wantErr {
				if !errors.Is(err, ErrMarkers) {
					t.Fatalf("Edit: err %v, want ErrMarkers", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("Edit:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestLinesSortedAndParsedBack(t *testing.T) {
	in := []Entry{
		{Name: "pg-b", Addr: netip.MustParseAddr("127.84.3.9")},
		{Name: "pg-a", Addr: netip.MustParseAddr("127.12.200.7")},
		{Name: "redis", Addr: netip.MustParseAddr("127.0.0.1")},
	}
	lines := Lines(in)
	want := []string{Begin, note, "127.12.200.7\tpg-a", "127.84.3.9\tpg-b", "127.0.0.1\tredis", End}
	if len(lines) != len(want) {
		t.Fatalf("Lines = %q, want %q", lines, want)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Fatalf("Lines = %q, want %q", lines, want)
		}
	}
	if Lines(nil) != nil {
		t.Fatalf("Lines(nil) = %q, want nil", Lines(nil))
	}
	out, err := Edit([]byte("127.0.0.1 localhost\n"), lines)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "pg-a" || got[1].Addr != in[0].Addr || got[2].Name != "redis" {
		t.Fatalf("Parse = %v", got)
	}
}

// FuzzEdit checks, for any file: an edit that succeeds is idempotent, the
// block can be taken out again, and every line outside the block survives
// in order.
func FuzzEdit(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n"))
	f.Add([]byte("a\r\n# BEGIN ambassador\r\nx\r\n# END ambassador\r\nb"))
	f.Add([]byte("# END ambassador\n# BEGIN ambassador\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Edit(in, block)
		if err != nil {
			if !errors.Is(err, ErrMarkers) {
				t.Fatalf("Edit: %v is not ErrMarkers", err)
			}
			return
		}
		again, err := Edit(out, block)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second Edit changed the file: %v\n%q\n%q", err, out, again)
		}
		removed, err := Edit(out, nil)
		if err != nil {
			t.Fatalf("remove: %v", err)
		}
		if bytes.Contains(removed, []byte(note)) {
			t.Fatalf("block still there after remove: %q", removed)
		}
		base, err := Edit(in, nil)
		if err != nil {
			t.Fatalf("remove from the input: %v", err)
		}
		// The only byte allowed outside the block: the line ending given to
		// a last line that had none.
		if !bytes.Equal(removed, base) && !bytes.Equal(removed, append(base, '\n')) && !bytes.Equal(removed, append(base, "\r\n"...)) {
			t.Fatalf("lines outside the block changed:\n in  %q\n out %q", base, removed)
		}
		if !bytes.HasPrefix(removed, base) {
			t.Fatalf("remove lost a line: %q vs %q", removed, base)
		}
	})
}
