// Package hostsfile keeps one marked block of a hosts(5) file in line with
// a list of names and addresses, leaving every other line as it was.
//
// The block looks like this:
//
//	# BEGIN ambassador
//	# managed by ambassador: changes inside this block are overwritten
//	127.0.0.1	redis
//	127.31.7.4	pg-a
//	# END ambassador
//
// Edit is the pure part (table-tested and fuzzed); File does the I/O: an
// atomic replace that keeps the file's mode and owner and does not clobber
// an edit someone else made in between.
package hostsfile

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Marker lines of the block. A line is a marker when it equals one of
// these once surrounding white space is trimmed.
const (
	Begin = "# BEGIN ambassador"
	End   = "# END ambassador"
	note  = "# managed by ambassador: changes inside this block are overwritten"
)

// ErrMarkers reports a block that cannot be edited safely: a second BEGIN
// or END, an END before its BEGIN, or a BEGIN without END. Edit refuses
// rather than guess which lines are ours.
var ErrMarkers = errors.New("hostsfile: malformed ambassador block")

// Entry maps one host name to an address.
type Entry struct {
	Name string
	Addr netip.Addr
}

// Lines renders entries as the lines of a block, sorted by name (then
// address) so that the same set always gives the same bytes. An empty list
// gives nil, which Edit takes as "no block".
func Lines(entries []Entry) []string {
	if len(entries) == 0 {
		return nil
	}
	es := slices.Clone(entries)
	slices.SortFunc(es, func(a, b Entry) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), a.Addr.Compare(b.Addr))
	})
	out := []string{Begin, note}
	for _, e := range es {
		out = append(out, e.Addr.String()+"\t"+e.Name)
	}
	return append(out, End)
}

// Edit returns content with the marked block replaced by lines, or with the
// block removed when lines is empty. Every line outside the block keeps its
// bytes, line ending included; the block's lines take the file's line
// ending (CRLF when its first line ends so). A file with no block gets one
// at its end; if its last line had no line ending it gets one, the only
// byte Edit ever adds outside the block.
func Edit(content []byte, lines []string) ([]byte, error) {
	raw := splitLines(content)
	begin, end := -1, -1
	for i, l := range raw {
		switch string(bytes.TrimSpace(l)) {
		case Begin:
			if begin >= 0 {
				return nil, fmt.Errorf("%w: second %q on line %d", ErrMarkers, Begin, i+1)
			}
			begin = i
		case End:
			if end >= 0 {
				return nil, fmt.Errorf("%w: second %q on line %d", ErrMarkers, End, i+1)
			}
			if begin < 0 {
				return nil, fmt.Errorf("%w: %q on line %d comes before %q", ErrMarkers, End, i+1, Begin)
			}
			end = i
		}
	}
	if begin >= 0 && end < 0 {
		return nil, fmt.Errorf("%w: %q on line %d has no %q", ErrMarkers, Begin, begin+1, End)
	}
	eol := lineEnding(raw)
	var out []byte
	if begin < 0 {
		if len(lines) == 0 {
			return content, nil
		}
		out = append(out, content...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			// A last line cut after its '\r' was half of a CRLF.
			if out[len(out)-1] == '\r' {
				out = append(out, '\n')
			} else {
				out = append(out, eol...)
			}
			eol = lineEnding(splitLines(out))
		}
		return append(out, renderBlock(lines, eol)...), nil
	}
	block := renderBlock(lines, eol)
	for _, l := range raw[:begin] {
		out = append(out, l...)
	}
	out = append(out, block...)
	for _, l := range raw[end+1:] {
		out = append(out, l...)
	}
	return out, nil
}

// lineEnding is CRLF when the file's first line ends so, else LF.
func lineEnding(raw [][]byte) string {
	if len(raw) > 0 && bytes.HasSuffix(raw[0], []byte("\r\n")) {
		return "\r\n"
	}
	return "\n"
}

func renderBlock(lines []string, eol string) []byte {
	var b []byte
	for _, l := range lines {
		b = append(append(b, l...), eol...)
	}
	return b
}

// splitLines cuts content after each '\n'; the last line may lack one.
func splitLines(content []byte) [][]byte {
	var out [][]byte
	for len(content) > 0 {
		i := bytes.IndexByte(content, '\n')
		if i < 0 {
			out = append(out, content)
			break
		}
		out = append(out, content[:i+1])
		content = content[i+1:]
	}
	return out
}

// Parse returns the entries of the block in content (nil when there is
// none): what a resolver reading the file would map, for tests and for
// status. Lines of the block that are not "ADDR NAME..." are skipped.
func Parse(content []byte) ([]Entry, error) {
	var out []Entry
	in := false
	for _, l := range splitLines(content) {
		s := string(bytes.TrimSpace(l))
		switch {
		case s == Begin:
			if in {
				return nil, fmt.Errorf("%w: second %q", ErrMarkers, Begin)
			}
			in = true
		case s == End:
			if !in {
				return nil, fmt.Errorf("%w: %q without %q", ErrMarkers, End, Begin)
			}
			return out, nil
		case in && s != "" && !strings.HasPrefix(s, "#"):
			f := strings.Fields(s)
			a, err := netip.ParseAddr(f[0])
			if err != nil || len(f) < 2 {
				continue
			}
			for _, name := range f[1:] {
				out = append(out, Entry{Name: name, Addr: a})
			}
		}
	}
	if in {
		return nil, fmt.Errorf("%w: %q without %q", ErrMarkers, Begin, End)
	}
	return nil, nil
}
