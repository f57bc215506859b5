package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/nodename"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

func validRecord() record {
	return record{Entry: Entry{
		Node: "a", Addr: "10.0.0.1", DataPort: 7000, Version: 42,
		Services: []Service{{Name: "db", Port: 5432}, {Name: "web", Port: 80}},
	}}
}

func mustEncodeRecord(t testing.TB, r record) []byte {
	t.Helper()
	b, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func msg(kind byte, body string) []byte {
	return append([]byte{wireVersion, kind}, body...)
}

// versionMsg is a record broadcast for node "a" with the given version.
func versionMsg(v uint64) []byte {
	return msg(kindRecord, fmt.Sprintf(`{"node":"a","addr":"1.2.3.4","version":%d}`, v))
}

func TestDecodeRecord(t *testing.T) {
	soon := uint64(time.Now().Add(maxVersionAhead - time.Hour).UnixNano())
	tests := []struct {
		name    string
		in      []byte
		want    record
		wantErr bool
	}{
		{name: "valid", in: mustEncodeRecord(t, validRecord()), want: validRecord()},
		{name: "unsorted services are sorted", in: msg(kindRecord, `{"node":"a","addr":"::1","version":1,"services":[{"name":"z","port":1},{"name":"b","port":2}]}`),
			want: record{Entry: Entry{Node: "a", Addr: "::1", Version: 1, Services: []Service{{Name: "b", Port: 2}, {Name: "z", Port: 1}}}}},
		{name: "empty services become nil", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[]}`),
			want: record{Entry: Entry{Node: "a", Addr: "1.2.3.4", Version: 1}}},
		{name: "left flag and unknown field", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"left":true,"future":7}`),
			want: record{Entry: Entry{Node: "a", Addr: "1.2.3.4", Version: 1}, Left: true}},
		{name: "fingerprint", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"fingerprint":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`),
			want: record{Entry: Entry{Node: "a", Addr: "1.2.3.4", Version: 1, Fingerprint: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}},
		{name: "fingerprint upper case", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"fingerprint":"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"}`), wantErr: true},
		{name: "fingerprint short", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"fingerprint":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"}`), wantErr: true},
		{name: "fingerprint not hex", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"fingerprint":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg"}`), wantErr: true},
		{name: "empty", in: nil, wantErr: true},
		{name: "one byte", in: []byte{wireVersion}, wantErr: true},
		{name: "bad version", in: append([]byte{9}, mustEncodeRecord(t, validRecord())[1:]...), wantErr: true},
		{name: "state kind", in: msg(kindState, `{"records":[]}`), wantErr: true},
		{name: "bad json", in: msg(kindRecord, `{"node":`), wantErr: true},
		{name: "json array", in: msg(kindRecord, `[]`), wantErr: true},
		{name: "no node", in: msg(kindRecord, `{"addr":"1.2.3.4","version":1}`), wantErr: true},
		{name: "long node", in: msg(kindRecord, `{"node":"`+strings.Repeat("x", nodename.MaxLen+1)+`","addr":"1.2.3.4","version":1}`), wantErr: true},
		{name: "bad addr", in: msg(kindRecord, `{"node":"a","addr":"host","version":1}`), wantErr: true},
		{name: "data port range", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","data_port":70000,"version":1}`), wantErr: true},
		{name: "negative data port", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","data_port":-1,"version":1}`), wantErr: true},
		{name: "version zero", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4"}`), wantErr: true},
		{name: "negative version", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":-1}`), wantErr: true},
		{name: "version within a day ahead", in: versionMsg(soon),
			want: record{Entry: Entry{Node: "a", Addr: "1.2.3.4", Version: soon}}},
		{name: "version more than a day ahead", in: versionMsg(uint64(time.Now().Add(maxVersionAhead + time.Hour).UnixNano())), wantErr: true},
		{name: "max version", in: versionMsg(math.MaxUint64), wantErr: true},
		{name: "version overflows", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":18446744073709551616}`), wantErr: true},
		{name: "service port zero", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"x","port":0}]}`), wantErr: true},
		{name: "service weight negative", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"x","port":1,"weight":-1}]}`), wantErr: true},
		{name: "service weight too big", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"x","port":1,"weight":1001}]}`), wantErr: true},
		{name: "service no name", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"port":1}]}`), wantErr: true},
		// Service names follow the one rule (svcname, RFC 6335) where they
		// enter from a peer, not 1-253 arbitrary bytes.
		{name: "service name 16 bytes", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"abcdefghijklmnop","port":1}]}`), wantErr: true},
		{name: "service name with dot", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"a.b","port":1}]}`), wantErr: true},
		{name: "service name with space", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"re dis","port":1}]}`), wantErr: true},
		{name: "service name digits only", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"6379","port":1}]}`), wantErr: true},
		{name: "service name a hexadecimal number", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"0x10","port":1}]}`), wantErr: true},
		{name: "service name leading hyphen", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"-web","port":1}]}`), wantErr: true},
		{name: "duplicate service", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"x","port":1},{"name":"x","port":2}]}`), wantErr: true},
		{name: "down services sorted", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"web","port":80}],"down":[{"name":"z","port":1},{"name":"b","port":2}]}`),
			want: record{Entry: Entry{Node: "a", Addr: "1.2.3.4", Version: 1, Services: []Service{{Name: "web", Port: 80}}, Down: []Service{{Name: "b", Port: 2}, {Name: "z", Port: 1}}}}},
		{name: "empty down becomes nil", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"down":[]}`),
			want: record{Entry: Entry{Node: "a", Addr: "1.2.3.4", Version: 1}}},
		{name: "service both up and down", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"x","port":1}],"down":[{"name":"x","port":1}]}`), wantErr: true},
		// Service names compare case-insensitively (RFC 6335, svcname):
		// mesh refuses "web" and "WEB" as two announcements, so a
		// record must not carry them either.
		{name: "duplicate service differing in case", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"web","port":80},{"name":"WEB","port":81}]}`), wantErr: true},
		{name: "service up and down differing in case", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"web","port":80}],"down":[{"name":"WEB","port":80}]}`), wantErr: true},
		{name: "duplicate down service differing in case", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"down":[{"name":"Web","port":1},{"name":"a","port":3},{"name":"wEB","port":2}]}`), wantErr: true},
		{name: "duplicate down service", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"down":[{"name":"x","port":1},{"name":"x","port":2}]}`), wantErr: true},
		{name: "down service port zero", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"down":[{"name":"x","port":0}]}`), wantErr: true},
		{name: "too large", in: msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"pad":"`+strings.Repeat("x", maxRecordMsg)+`"}`), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRecord(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want error", got)
				}
				if !errors.Is(err, errDecode) {
					t.Errorf("got error %v, want it to match errDecode", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeState(t *testing.T) {
	a, b := validRecord(), validRecord()
	b.Node = "b"
	good, err := encodeState([]record{a, b})
	if err != nil {
		t.Fatal(err)
	}
	dup, err := encodeState([]record{a, a})
	if err != nil {
		t.Fatal(err)
	}
	many := func(n int) []byte {
		rs := make([]record, n)
		for i := range rs {
			rs[i] = validRecord()
			rs[i].Node = fmt.Sprintf("n%d", i)
		}
		b, err := encodeState(rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A record valid but for its size: an unknown field pads it.
	big := msg(kindState, `{"records":[{"node":"a","addr":"1.2.3.4","version":1,"pad":"`+strings.Repeat("x", maxRecordMsg)+`"}]}`)
	tests := []struct {
		name    string
		in      []byte
		want    int
		wantErr bool
	}{
		{name: "valid", in: good, want: 2},
		{name: "empty", in: msg(kindState, `{"records":[]}`), want: 0},
		{name: "null records", in: msg(kindState, `{}`), want: 0},
		{name: "record kind", in: mustEncodeRecord(t, a), wantErr: true},
		{name: "duplicate node", in: dup, wantErr: true},
		{name: "one bad service name", in: msg(kindState, `{"records":[{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"a_b","port":1}]}]}`), wantErr: true},
		{name: "one bad record", in: msg(kindState, `{"records":[{"node":"a","addr":"x","version":1}]}`), wantErr: true},
		{name: "too many records", in: msg(kindState, `{"records":[`+strings.Repeat(`{},`, maxStateRecords)+`{}]}`), wantErr: true},
		{name: "as many valid records as allowed", in: many(maxStateRecords), want: maxStateRecords},
		{name: "one valid record too many", in: many(maxStateRecords + 1), wantErr: true},
		{name: "a record larger than a broadcast may be", in: big, wantErr: true},
		{name: "records null", in: msg(kindState, `{"records":null}`), want: 0},
		{name: "unknown fields skipped", in: msg(kindState, `{"x":[1,{"y":2}],"records":[{"node":"a","addr":"1.2.3.4","version":1}],"z":null}`), want: 1},
		{name: "field name in any case", in: msg(kindState, `{"Records":[{"node":"a","addr":"1.2.3.4","version":1}]}`), want: 1},
		{name: "two record lists", in: msg(kindState, `{"records":[],"records":[]}`), wantErr: true},
		{name: "records not a list", in: msg(kindState, `{"records":{}}`), wantErr: true},
		{name: "not an object", in: msg(kindState, `[]`), wantErr: true},
		{name: "data after the state", in: msg(kindState, `{"records":[]} {}`), wantErr: true},
		{name: "space everywhere", in: msg(kindState, " \n{ \"x\" : [ \"]}\\\"\" ] , \"records\" :\t[ {\"node\":\"a\",\"addr\":\"1.2.3.4\",\"version\":1} ] }\r\n"), want: 1},
		{name: "a key that is not a string", in: msg(kindState, `{1:[]}`), wantErr: true},
		{name: "no colon", in: msg(kindState, `{"records"[]}`), wantErr: true},
		{name: "unknown field not JSON", in: msg(kindState, `{"x":[1,],"records":[]}`), wantErr: true},
		{name: "unknown field missing", in: msg(kindState, `{"x":,"records":[]}`), wantErr: true},
		{name: "no comma between records", in: msg(kindState, `{"records":[{"node":"a","addr":"1.2.3.4","version":1} {"node":"b","addr":"1.2.3.4","version":1}]}`), wantErr: true},
		{name: "trailing comma", in: msg(kindState, `{"records":[],}`), wantErr: true},
		{name: "unclosed list", in: msg(kindState, `{"records":[{"node":"a","addr":"1.2.3.4","version":1}`), wantErr: true},
		{name: "record not an object", in: msg(kindState, `{"records":[1]}`), wantErr: true},
		{name: "truncated", in: good[:len(good)-1], wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeState(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %d records, want error", len(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if len(got) != tc.want {
				t.Errorf("got %d records, want %d", len(got), tc.want)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(mustEncodeRecord(f, validRecord()))
	f.Add(msg(kindRecord, `{"node":"a","addr":"::1","version":1,"left":true}`))
	f.Add(msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"x","port":1},{"name":"x","port":2}]}`))
	f.Add(versionMsg(math.MaxUint64))
	f.Add(versionMsg(math.MaxUint64 - 1))
	f.Add(versionMsg(uint64(time.Now().Add(2 * maxVersionAhead).UnixNano())))
	f.Add(msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"fingerprint":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`))
	f.Add(msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"a.b","port":1}]}`))
	f.Add(msg(kindRecord, `{"node":"a","addr":"1.2.3.4","version":1,"services":[{"name":"x","port":1}],"down":[{"name":"y","port":2}]}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		for _, s := range append(slices.Clone(r.Services), r.Down...) {
			if err := svcname.Check(string(s.Name)); err != nil {
				t.Fatalf("decoded a record with a service name svcname rejects: %v", err)
			}
		}
		again, err := decodeRecord(mustEncodeRecord(t, r))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", r, err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip: got %+v, want %+v", again, r)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	a, b := validRecord(), validRecord()
	b.Node = "b"
	for _, rs := range [][]record{nil, {a}, {a, b}, {a, a}} {
		buf, err := encodeState(rs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	f.Add(msg(kindState, `{"records":[{}]}`))
	f.Add(msg(kindState, `{"records":[{"node":"a","addr":"::1","version":18446744073709551615}]}`))
	f.Add(msg(kindState, ` {"x":"]\"","Records":[{"node":"a","addr":"::1","version":1}] } `))
	f.Fuzz(func(t *testing.T, buf []byte) {
		rs, err := decodeState(buf)
		// decodeStateJSON walks the JSON itself: it must agree with
		// json.Unmarshal of the whole state, as decoded before it.
		if check(buf, kindState, maxStateMsg) == nil {
			want, werr := decodeStateUnmarshal(buf[2:])
			switch {
			case err == nil && (werr != nil || len(rs) != len(want) || (len(rs) > 0 && !reflect.DeepEqual(rs, want))):
				t.Fatalf("decodeState: %+v; json.Unmarshal: %+v, %v", rs, want, werr)
			case err != nil && werr == nil && !strings.Contains(err.Error(), "two record lists") && !strings.Contains(err.Error(), "more than"):
				t.Fatalf("decodeState: %v; json.Unmarshal decodes %+v", err, want)
			}
		}
		if err != nil {
			return
		}
		enc, err := encodeState(rs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeState(enc)
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", rs, err)
		}
		if len(again) != len(rs) || (len(rs) > 0 && !reflect.DeepEqual(again, rs)) {
			t.Fatalf("round trip: got %+v, want %+v", again, rs)
		}
	})
}

// decodeStateUnmarshal is what decodeState did before decodeStateJSON
// (session 13): json.Unmarshal of the whole state, then the checks.
func decodeStateUnmarshal(body []byte) ([]record, error) {
	var s wireState
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, err
	}
	if len(s.Records) > maxStateRecords {
		return nil, errDecode
	}
	seen := make(map[string]bool)
	for i := range s.Records {
		if err := validateRecord(&s.Records[i], time.Now()); err != nil {
			return nil, err
		}
		if seen[s.Records[i].Node] {
			return nil, errDecode
		}
		seen[s.Records[i].Node] = true
	}
	return s.Records, nil
}

func TestNextVersion(t *testing.T) {
	tests := []struct {
		name string
		prev uint64
		now  int64
		want uint64
	}{
		{name: "clock wins", prev: 5, now: 100, want: 100},
		{name: "prev wins when clock is behind", prev: 200, now: 100, want: 201},
		{name: "equal", prev: 100, now: 100, want: 101},
		{name: "clock before 1970", prev: 7, now: -5, want: 8},
		{name: "saturates instead of wrapping", prev: math.MaxUint64, now: 100, want: math.MaxUint64},
		{name: "one below max", prev: math.MaxUint64 - 1, now: 100, want: math.MaxUint64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextVersion(tc.prev, time.Unix(0, tc.now)); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

// TestRefuteHighestAcceptedVersion checks that refuting the highest
// version the network may claim for this node still yields a version that
// grows, so the node's entry keeps winning.
func TestRefuteHighestAcceptedVersion(t *testing.T) {
	c, err := New(Config{NodeName: "a", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRecord(versionMsg(maxVersion(time.Now()) - 1))
	if err != nil {
		t.Fatal(err)
	}
	c.merge([]record{r}, false)
	got := c.Catalog()
	if len(got) != 1 || got[0].Version <= r.Version {
		t.Fatalf("own entry after refuting version %d: got %+v, want a higher version", r.Version, got)
	}
}
