package gossip

import (
	"bytes"
	"cmp"
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/nodename"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// Wire format. Every message this package puts on the wire (a broadcast
// through NotifyMsg/GetBroadcasts, or the push/pull state through
// LocalState/MergeRemoteState) is
//
//	[0] wireVersion  (1)
//	[1] kind         (kindRecord, kindState, ...: see the kind constants)
//	[2:] JSON        (record for kindRecord, wireState for kindState)
//
// The version byte lets a future format be rejected cleanly instead of
// being misparsed. The kind byte keeps a broadcast from being merged as a
// full state and vice versa. Unknown JSON fields are ignored, so fields can
// be added without a version bump.
const (
	wireVersion byte = 1

	kindRecord  byte = 1
	kindState   byte = 2
	kindRefused byte = 3 // JSON: the name of a suspect whose gossip port refused; see suspect.go
	kindWant    byte = 4 // JSON: the name of a node asking the receiver for its record; see want.go
	// kindWantFrom: JSON wantFrom, a node asking the receiver for its
	// record and saying where to send it; see want.go. Sent only to nodes
	// whose metadata is version 2, which know it.
	kindWantFrom byte = 5
	// kindGreet: JSON greeting, an announcing node's record and where it
	// listens for gossip, sent to a member it has just learnt of; see
	// greet.go. Sent only to nodes whose metadata has metaGreets,
	// which know it: an older node's NotifyMsg takes any other kind for a
	// record, whose decode rejects the kind byte, and drops it.
	kindGreet byte = 6
	// kindStateFlate: a push/pull state whose JSON wireState is
	// compressed with DEFLATE (RFC 1951, compress/flate). Sent only when
	// every alive member's metadata has metaStateFlate, and never in a
	// join (see delegate.LocalState, also for the one narrow case where an
	// older node can get one): an older node's decodeState rejects the
	// kind byte and drops the state, so it misses one round of
	// anti-entropy, never misreads it.
	kindStateFlate byte = 7

	// maxRecordMsg bounds one broadcast. Broadcasts travel in UDP packets
	// (memberlist's UDPBufferSize, 1400 bytes by default), so anything larger
	// is malformed; the bound only has to stop a hostile sender.
	maxRecordMsg = 64 << 10
	// maxStateMsg bounds one push/pull state (a TCP stream), compressed
	// or not, and what a kindStateFlate state inflates to: DEFLATE
	// inflates up to about 1,000 times, so without the second bound a
	// hostile peer's 4 MiB could make a node allocate gigabytes.
	maxStateMsg = 4 << 20
	// maxStateRecords bounds the number of nodes in one push/pull state.
	maxStateRecords = 4096
	// maxServices bounds the services one node may announce.
	maxServices = 256
	// maxVersionAhead bounds how far a remote record's version (UnixNano
	// based, see nextVersion) may lie ahead of this node's clock. Without
	// it one record with a huge version would make its node's next
	// versions wrap around or stop growing, wedging the node's entry in
	// every catalog. A day is far beyond any sane clock skew.
	maxVersionAhead = 24 * time.Hour
)

// errDecode is wrapped by every decoding error.
var errDecode = errors.New("gossip: decode")

// errClockAhead is wrapped, with errDecode, by the error for a record whose
// version lies more than maxVersionAhead ahead of this node's clock: the
// one decoding error that likely says this node's clock is wrong.
var errClockAhead = errors.New("record from the future")

// record is one node's catalog entry as stored and gossiped. Left is set by
// the node itself in Leave, so peers hide it as soon as the broadcast
// arrives and can report the member as "left" rather than "dead".
type record struct {
	Entry
	Left bool `json:"left,omitempty"`
}

// wireState is the push/pull payload.
type wireState struct {
	Records []record `json:"records"`
}

func (r record) clone() record {
	r.Services = slices.Clone(r.Services)
	r.Down = slices.Clone(r.Down)
	return r
}

// equal reports whether r and o carry the same content.
func (r record) equal(o record) bool {
	return r.Node == o.Node && r.Addr == o.Addr && r.DataPort == o.DataPort && r.Fingerprint == o.Fingerprint &&
		r.Version == o.Version && r.Left == o.Left && slices.Equal(r.Services, o.Services) &&
		slices.Equal(r.Down, o.Down)
}

func encodeRecord(r record) ([]byte, error) {
	return encode(kindRecord, r)
}

func encodeRefused(node string) ([]byte, error) {
	return encode(kindRefused, node)
}

// decodeRefused decodes a kindRefused message: a node name.
func decodeRefused(b []byte) (string, error) {
	var node string
	if err := decode(b, kindRefused, maxRecordMsg, &node); err != nil {
		return "", err
	}
	if err := checkName("node", node); err != nil {
		return "", fmt.Errorf("%w: refused node: %w", errDecode, err)
	}
	return node, nil
}

func encodeState(rs []record) ([]byte, error) {
	return encode(kindState, wireState{Records: rs})
}

// encodeStateFlate is encodeState with the JSON compressed by DEFLATE,
// kind kindStateFlate. A push/pull state is the one large message this
// package sends (a record of about 120 to 250 bytes per member, 1,000
// members at most a few hundred KB), and its JSON repeats the same keys
// and much the same values in every record, which DEFLATE's LZ77 window
// and Huffman codes remove. It is compressed here rather than by
// memberlist's EnableCompression because that setting also compresses
// every packet with a fresh LZW writer (see DefaultConfig), and it is
// compress/flate rather than LZW because flate compresses this JSON
// better and is the standard library's.
func encodeStateFlate(rs []record) ([]byte, error) {
	body, err := json.Marshal(wireState{Records: rs})
	if err != nil {
		return nil, fmt.Errorf("gossip: encode: %w", err)
	}
	buf := bytes.NewBuffer(make([]byte, 0, len(body)/4+64))
	buf.Write([]byte{wireVersion, kindStateFlate})
	zw, _ := flateWriters.Get().(*flate.Writer)
	if zw == nil {
		// DefaultCompression is a valid level: NewWriter cannot fail.
		zw, _ = flate.NewWriter(buf, flate.DefaultCompression)
	} else {
		zw.Reset(buf)
	}
	defer flateWriters.Put(zw)
	if _, err := zw.Write(body); err != nil {
		return nil, fmt.Errorf("gossip: compress state: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gossip: compress state: %w", err)
	}
	return buf.Bytes(), nil
}

// flateWriters keeps encodeStateFlate's compressors: a fresh one
// allocates about 800 KB (its hash chains and window), which cost more
// than compressing a small cluster's state (BenchmarkStateFlate).
var flateWriters sync.Pool

// inflateState returns the JSON of a kindStateFlate message b (already
// checked for length, version and kind), at most maxStateMsg bytes.
func inflateState(b []byte) ([]byte, error) {
	zr := flate.NewReader(bytes.NewReader(b[2:]))
	defer zr.Close()
	body, err := io.ReadAll(io.LimitReader(zr, maxStateMsg+1))
	if err != nil {
		return nil, fmt.Errorf("%w: inflate state: %w", errDecode, err)
	}
	if len(body) > maxStateMsg {
		return nil, fmt.Errorf("%w: state inflates beyond %d bytes", errDecode, maxStateMsg)
	}
	return body, nil
}

func encode(kind byte, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("gossip: encode: %w", err)
	}
	return append([]byte{wireVersion, kind}, body...), nil
}

// decodeRecord decodes and validates one broadcast. It never panics and
// retains no reference to b.
func decodeRecord(b []byte) (record, error) {
	var r record
	if err := decode(b, kindRecord, maxRecordMsg, &r); err != nil {
		return record{}, err
	}
	if err := validateRecord(&r, time.Now()); err != nil {
		return record{}, err
	}
	return r, nil
}

// decodeState decodes and validates a push/pull state, kindState or
// kindStateFlate. One invalid record rejects the whole state: a sender
// that produces it is broken or hostile. It never panics and retains no
// reference to b.
func decodeState(b []byte) ([]record, error) {
	kind := kindState
	if len(b) > 1 && b[1] == kindStateFlate {
		kind = kindStateFlate
	}
	if err := check(b, kind, maxStateMsg); err != nil {
		return nil, err
	}
	body := b[2:]
	if kind == kindStateFlate {
		var err error
		if body, err = inflateState(b); err != nil {
			return nil, err
		}
	}
	return decodeStateJSON(body)
}

// decodeStateJSON decodes a wireState's JSON one record at a time and
// validates each record as it arrives, so that a state costs what its
// valid records cost: at most maxStateRecords of them, each at most
// maxRecordMsg of JSON as a broadcast is. json.Unmarshal of the whole
// state would first build every record the JSON spells: 4 MiB of empty
// records ("{},") are 1.4 million of them, most of a gigabyte, and those
// 4 MiB travel as a few KB, DEFLATEd here or under memberlist's own LZW
// (it reads a compressed stream from any peer). The walk is a jsonCursor
// over body, not a json.Decoder, which would copy each value before its
// size could be checked: a record of 4 MiB would cost 12 MB more.
func decodeStateJSON(body []byte) ([]record, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: state: %s", errDecode, fmt.Sprintf(format, a...))
	}
	c := jsonCursor{b: body}
	if c.literal("null") {
		// An empty state to json.Unmarshal, which this walk agrees with
		// (FuzzDecodeState).
		if c.skipSpace(); c.i == len(body) {
			return nil, nil
		}
		return nil, bad("not a JSON object")
	}
	if !c.consume('{') {
		return nil, bad("not a JSON object")
	}
	var (
		recs []record
		seen map[string]bool
		got  bool // a "records" key was read
	)
	now := time.Now()
	for more := !c.consume('}'); more; {
		var key string
		if k, err := c.value(len(body)); err != nil || json.Unmarshal(k, &key) != nil {
			return nil, bad("a key that is not a string")
		}
		if !c.consume(':') {
			return nil, bad("no ':' after key %q", key)
		}
		// Case-insensitive, as json.Unmarshal matches field names.
		switch {
		case !strings.EqualFold(key, "records"):
			// An unknown field, which json.Unmarshal would ignore.
			if v, err := c.value(len(body)); err != nil || !json.Valid(v) {
				return nil, bad("field %q is not JSON", key)
			}
		case got:
			return nil, bad("two record lists")
		case c.literal("null"):
			got = true
		case !c.consume('['):
			return nil, bad("records are not a list")
		default:
			got = true
			for more := !c.consume(']'); more; {
				if len(recs) == maxStateRecords {
					return nil, bad("more than %d records", maxStateRecords)
				}
				raw, err := c.value(maxRecordMsg)
				if err != nil {
					return nil, bad("record %d: %v", len(recs), err)
				}
				var r record
				if err := json.Unmarshal(raw, &r); err != nil {
					return nil, bad("record %d: %v", len(recs), err)
				}
				if err := validateRecord(&r, now); err != nil {
					return nil, err
				}
				if seen[r.Node] {
					return nil, fmt.Errorf("%w: node %q appears twice", errDecode, r.Node)
				}
				if seen == nil {
					seen = make(map[string]bool)
				}
				seen[r.Node] = true
				recs = append(recs, r)
				if more = c.consume(','); !more && !c.consume(']') {
					return nil, bad("no ',' or ']' after record %d", len(recs)-1)
				}
			}
		}
		if more = c.consume(','); !more && !c.consume('}') {
			return nil, bad("no ',' or '}' after field %q", key)
		}
	}
	if c.skipSpace(); c.i != len(body) {
		return nil, bad("data after the state")
	}
	return recs, nil
}

// jsonCursor walks JSON in place for decodeStateJSON: it finds where each
// value ends, and json.Unmarshal or json.Valid checks the value itself.
type jsonCursor struct {
	b []byte
	i int // the next byte to read
}

func (c *jsonCursor) skipSpace() {
	for c.i < len(c.b) && (c.b[c.i] == ' ' || c.b[c.i] == '\t' || c.b[c.i] == '\r' || c.b[c.i] == '\n') {
		c.i++
	}
}

// consume skips space and then ch, and reports whether ch was there.
func (c *jsonCursor) consume(ch byte) bool {
	c.skipSpace()
	if c.i < len(c.b) && c.b[c.i] == ch {
		c.i++
		return true
	}
	return false
}

// literal skips space and then word (a JSON literal such as null), and
// reports whether word was there.
func (c *jsonCursor) literal(word string) bool {
	c.skipSpace()
	if !bytes.HasPrefix(c.b[c.i:], []byte(word)) {
		return false
	}
	c.i += len(word)
	return true
}

// value skips space and returns the next value's bytes (an object, list,
// string, number or literal), failing once they run past limit bytes or
// past the end. Brackets are counted, not matched: a value whose inside
// is malformed is returned for json.Unmarshal to reject.
func (c *jsonCursor) value(limit int) ([]byte, error) {
	c.skipSpace()
	start := c.i
	if c.i == len(c.b) {
		return nil, io.ErrUnexpectedEOF
	}
	if ch := c.b[c.i]; ch != '{' && ch != '[' && ch != '"' {
		// A number or literal: up to the next delimiter.
		for c.i < len(c.b) && !strings.ContainsRune(",:}] \t\r\n", rune(c.b[c.i])) {
			c.i++
		}
		if c.i-start > limit {
			return nil, fmt.Errorf("value of more than %d bytes", limit)
		}
		return c.b[start:c.i], nil
	}
	depth, inString := 0, false
	for ; c.i < len(c.b); c.i++ {
		if c.i-start >= limit {
			return nil, fmt.Errorf("value of more than %d bytes", limit)
		}
		switch ch := c.b[c.i]; {
		case inString && ch == '\\':
			c.i++ // the escaped byte cannot end the string
		case inString && ch == '"':
			inString = false
		case inString:
		case ch == '"':
			inString = true
		case ch == '{' || ch == '[':
			depth++
		case ch == '}' || ch == ']':
			depth--
		}
		if depth == 0 && !inString {
			c.i++
			return c.b[start:c.i], nil
		}
	}
	return nil, io.ErrUnexpectedEOF
}

func decode(b []byte, kind byte, limit int, v any) error {
	if err := check(b, kind, limit); err != nil {
		return err
	}
	if err := json.Unmarshal(b[2:], v); err != nil {
		return fmt.Errorf("%w: %w", errDecode, err)
	}
	return nil
}

// check checks a message's length, version and kind.
func check(b []byte, kind byte, limit int) error {
	switch {
	case len(b) < 2:
		return fmt.Errorf("%w: message of %d bytes is too short", errDecode, len(b))
	case len(b) > limit:
		return fmt.Errorf("%w: message of %d bytes exceeds %d", errDecode, len(b), limit)
	case b[0] != wireVersion:
		return fmt.Errorf("%w: unsupported wire version %d", errDecode, b[0])
	case b[1] != kind:
		return fmt.Errorf("%w: message kind %d, want %d", errDecode, b[1], kind)
	}
	return nil
}

// validateRecord checks a remote record received at now and puts it in
// canonical form (services sorted by name, nil when empty).
func validateRecord(r *record, now time.Time) error {
	if err := checkName("node", r.Node); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(r.Addr); err != nil {
		return fmt.Errorf("%w: node %q: addr %q is not an IP", errDecode, r.Node, r.Addr)
	}
	if r.DataPort < 0 || r.DataPort > 65535 {
		return fmt.Errorf("%w: node %q: data port %d out of range", errDecode, r.Node, r.DataPort)
	}
	if r.Fingerprint != "" && !validFingerprint(r.Fingerprint) {
		return fmt.Errorf("%w: node %q: fingerprint %q is not 64 lowercase hex digits", errDecode, r.Node, r.Fingerprint)
	}
	if r.Version == 0 {
		return fmt.Errorf("%w: node %q: version 0", errDecode, r.Node)
	}
	if limit := maxVersion(now); r.Version > limit {
		return fmt.Errorf("%w: %w: node %q: version %d is more than %v ahead of this node's clock (limit %d)",
			errDecode, errClockAhead, r.Node, r.Version, maxVersionAhead, limit)
	}
	if err := validateServices(r.Node, "services", &r.Services); err != nil {
		return err
	}
	if err := validateServices(r.Node, "down services", &r.Down); err != nil {
		return err
	}
	// Names compare case-insensitively (svcname): "web" and "WEB" are one
	// service, which mesh refuses to announce twice. A name both up and
	// down would make the instance's health depend on which list a
	// reader looks at first.
	if len(r.Services)+len(r.Down) < 2 {
		return nil
	}
	up := make(map[svcname.Name]bool, len(r.Services))
	for _, s := range r.Services {
		k := s.Name.Lower()
		if up[k] {
			return fmt.Errorf("%w: node %q: service %q appears twice", errDecode, r.Node, s.Name)
		}
		up[k] = true
	}
	down := make(map[svcname.Name]bool, len(r.Down))
	for _, d := range r.Down {
		k := d.Name.Lower()
		switch {
		case up[k]:
			return fmt.Errorf("%w: node %q: service %q is both up and down", errDecode, r.Node, d.Name)
		case down[k]:
			return fmt.Errorf("%w: node %q: down service %q appears twice", errDecode, r.Node, d.Name)
		}
		down[k] = true
	}
	return nil
}

// validateServices checks one list of a remote record's services and sorts
// it by name, nil when empty.
func validateServices(node, what string, list *[]Service) error {
	svcs := *list
	if len(svcs) > maxServices {
		return fmt.Errorf("%w: node %q: %d %s, limit %d", errDecode, node, len(svcs), what, maxServices)
	}
	if len(svcs) == 0 {
		*list = nil
		return nil
	}
	sortServices(svcs)
	for i, s := range svcs {
		if err := checkService(s); err != nil {
			return fmt.Errorf("%w: node %q: %w", errDecode, node, err)
		}
		if i > 0 && svcs[i-1].Name == s.Name {
			return fmt.Errorf("%w: node %q: service %q appears twice", errDecode, node, s.Name)
		}
	}
	return nil
}

// maxVersion is the highest version accepted from the network at now.
func maxVersion(now time.Time) uint64 {
	return uint64(max(now.UnixNano(), 0)) + uint64(maxVersionAhead)
}

// validFingerprint reports whether s is 64 lowercase hex digits, the form of
// a SHA-256 fingerprint.
func validFingerprint(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checkName(what, name string) error {
	if err := nodename.Check(name); err != nil {
		return fmt.Errorf("%w: %s name %w", errDecode, what, err)
	}
	return nil
}

func checkService(s Service) error {
	// A peer's service name becomes a listener and a handoff header here:
	// it must follow the one rule every layer applies, or it would be a
	// listener whose every dial fails.
	if err := svcname.Check(string(s.Name)); err != nil {
		return err
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("service %q: port %d out of range 1-65535", s.Name, s.Port)
	}
	if s.Weight < 0 || s.Weight > maxWeight {
		return fmt.Errorf("service %q: weight %d out of range 0-%d", s.Name, s.Weight, maxWeight)
	}
	return nil
}

// maxWeight bounds Service.Weight so that balancers' weight sums stay
// small; the CLI allows up to the same.
const maxWeight = 1000

func sortServices(s []Service) {
	slices.SortStableFunc(s, func(a, b Service) int { return cmp.Compare(a.Name, b.Name) })
}
