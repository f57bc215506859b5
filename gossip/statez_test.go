package gossip

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// simRecords are n records shaped like the simulation's nodes (see
// simShape), with versions spread over 20 minutes.
func simRecords(n int) []record {
	now := time.Now()
	rs := make([]record, n)
	for i := range rs {
		_, rs[i] = simShape.member(i, now)
	}
	return rs
}

// TestStateFlateRoundTrip: a compressed push/pull state decodes to the
// same records as the plain one, and at 1,000 simulation-shaped members
// it is a small fraction of the plain one (measured: 10.6 KB against 124
// KB; TestPushPullSize).
func TestStateFlateRoundTrip(t *testing.T) {
	rs := simRecords(1000)
	rs[3].Down = rs[3].Services
	rs[3].Services = nil
	rs[7].Left = true
	rs[9].Fingerprint = strings.Repeat("ab", 32)
	plain, err := encodeState(rs)
	if err != nil {
		t.Fatal(err)
	}
	packed, err := encodeStateFlate(rs)
	if err != nil {
		t.Fatal(err)
	}
	if packed[0] != wireVersion || packed[1] != kindStateFlate {
		t.Fatalf("compressed state starts %x, want version %d kind %d", packed[:2], wireVersion, kindStateFlate)
	}
	want, err := decodeState(plain)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeState(packed)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("compressed state decodes to other records than the plain one")
	}
	if len(packed)*4 > len(plain) {
		t.Errorf("compressed state is %d bytes, plain %d: want at most a quarter", len(packed), len(plain))
	}
}

// TestStateFlateBound: a compressed state that inflates beyond
// maxStateMsg is rejected, however well it compresses (a hostile peer's
// "zip bomb"), and so is one that is not DEFLATE or is cut short.
// deflate returns body as a kindStateFlate message, compressed as far as
// compress/flate goes.
func deflate(body []byte) []byte {
	var buf bytes.Buffer
	buf.Write([]byte{wireVersion, kindStateFlate})
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = zw.Write(body)
	_ = zw.Close()
	return buf.Bytes()
}

// TestStateRecordBombs: a state's JSON within maxStateMsg that spells
// millions of empty records or services, which compresses to a few KB, is
// rejected after decoding a bounded amount, not after building them all
// (json.Unmarshal of the whole state allocated 883 MB for the first row).
// The bound is TestStateFlateBound's.
func TestStateRecordBombs(t *testing.T) {
	fill := func(head, elem, tail string) []byte { // JSON that fits a plain message's bound
		n := (maxStateMsg - 2 - len(head) - len(tail)) / len(elem)
		return []byte(head + strings.Repeat(elem, n) + tail)
	}
	records := fill(`{"records":[`, `{},`, `{}]}`)
	services := fill(`{"records":[{"node":"a","addr":"1.2.3.4","version":1,"services":[`, `{},`, `{}]}]}`)
	valid := fill(`{"records":[`, `{"node":"a","addr":"1.2.3.4","version":1},`, `{}]}`)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty records, deflated", deflate(records)},
		{"empty records, plain", append([]byte{wireVersion, kindState}, records...)},
		{"one record of empty services, deflated", deflate(services)},
		{"one valid record repeated, deflated", deflate(valid)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			rs, err := decodeState(tc.in)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, errDecode) {
				t.Fatalf("got %d records, %v; want errDecode", len(rs), err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 8*maxStateMsg {
				t.Errorf("decoding a %d-byte message allocated %d bytes, want at most %d", len(tc.in), got, 8*maxStateMsg)
			}
		})
	}
}

func TestStateFlateBound(t *testing.T) {
	// Valid JSON of no records, padded with whitespace past the bound:
	// without the bound it would decode.
	bomb := []byte(`{"records":[]` + strings.Repeat(" ", maxStateMsg) + `}`)
	b := deflate(bomb)
	if len(b) > 16<<10 {
		t.Fatalf("bomb compresses to %d bytes; the test wants a small one", len(b))
	}
	if _, err := decodeState(b); !errors.Is(err, errDecode) || !strings.Contains(err.Error(), "inflates beyond") {
		t.Errorf("state inflating to %d bytes: got %v, want an errDecode naming the bound", len(bomb), err)
	}
	// What decoding allocates stays near the bound even for a bomb that
	// would inflate to sixteen times it (compressed: about 64 KB).
	huge := deflate([]byte(`{"records":[]` + strings.Repeat(" ", 16*maxStateMsg) + `}`))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decodeState(huge)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errDecode) {
		t.Errorf("state inflating to %d bytes: got %v, want errDecode", 16*maxStateMsg, err)
	}
	// (Measured: 10 MB, 20 MB with -race; 165 MB without the bound.)
	if got := after.TotalAlloc - before.TotalAlloc; got > 8*maxStateMsg {
		t.Errorf("decoding a state that inflates to %d bytes allocated %d bytes, want at most %d", 16*maxStateMsg, got, 8*maxStateMsg)
	}
	// Just under the bound decodes.
	ok := []byte(`{"records":[]` + strings.Repeat(" ", maxStateMsg-len(`{"records":[]}`)) + `}`)
	if rs, err := decodeState(deflate(ok)); err != nil || len(rs) != 0 {
		t.Errorf("state inflating to exactly %d bytes: got %d records, %v; want none, nil", len(ok), len(rs), err)
	}
	for name, b := range map[string][]byte{
		"not deflate": msg(kindStateFlate, `{"records":[]}`),
		"cut short":   deflate([]byte(`{"records":[]}`))[:5],
		"empty":       msg(kindStateFlate, ""),
	} {
		if _, err := decodeState(b); !errors.Is(err, errDecode) {
			t.Errorf("%s: got %v, want errDecode", name, err)
		}
	}
}

// TestStateFlateOldPeers: a node sends a compressed state only while every
// alive member's metadata says it reads one, and never in a join, where
// the peer may be unknown. One member without metaStateFlate (a release
// before session 13, whose decodeState rejects kind 7 and drops the
// state) makes every state plain until it is gone.
func TestStateFlateOldPeers(t *testing.T) {
	_, d := newOffline(t, "self")
	now := time.Now()
	node := func(name string, meta []byte) *memberlist.Node {
		return &memberlist.Node{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: 7946, Meta: meta}
	}
	kind := func(join bool) byte {
		t.Helper()
		b := d.LocalState(join)
		if len(b) < 2 {
			t.Fatalf("LocalState(%v) = %x", join, b)
		}
		return b[1]
	}
	session12 := append(encodeMeta(now, true)[:9:9], metaServes|metaGreets)
	session12quiet := append(encodeMeta(now, false)[:9:9], metaGreets) // no services
	steps := []struct {
		what       string
		do         func()
		want, join byte
	}{
		{"alone", func() { d.NotifyJoin(node("self", encodeMeta(now, false))) }, kindStateFlate, kindState},
		{"a current member", func() { d.NotifyJoin(node("new", encodeMeta(now, true))) }, kindStateFlate, kindState},
		{"a session-12 member", func() { d.NotifyJoin(node("old", session12)) }, kindState, kindState},
		{"a member without metadata", func() { d.NotifyJoin(node("older", nil)) }, kindState, kindState},
		{"the session-12 member dies", func() { d.NotifyLeave(node("old", session12)) }, kindState, kindState},
		{"the other restarts current", func() { d.NotifyUpdate(node("older", encodeMeta(now, false))) }, kindStateFlate, kindState},
		{"a current member restarts old", func() { d.NotifyUpdate(node("new", session12)) }, kindState, kindState},
		{"it leaves", func() { d.NotifyLeave(node("new", session12)) }, kindStateFlate, kindState},
		// The member table keeps a dead member's last flag (until pruned)
		// and counts only alive ones: a rejoin or a death must neither
		// count it twice nor uncount it twice.
		{"it rejoins current", func() { d.NotifyJoin(node("new", encodeMeta(now, true))) }, kindStateFlate, kindState},
		{"it dies current", func() { d.NotifyLeave(node("new", encodeMeta(now, true))) }, kindStateFlate, kindState},
		{"it rejoins old", func() { d.NotifyJoin(node("new", session12)) }, kindState, kindState},
		{"it stops serving, still old", func() { d.NotifyUpdate(node("new", session12quiet)) }, kindState, kindState},
		{"it restarts current once more", func() { d.NotifyUpdate(node("new", encodeMeta(now, false))) }, kindStateFlate, kindState},
	}
	for _, s := range steps {
		s.do()
		if got := kind(false); got != s.want {
			t.Errorf("%s: push/pull state kind %d, want %d", s.what, got, s.want)
		}
		if got := kind(true); got != s.join {
			t.Errorf("%s: join state kind %d, want %d", s.what, got, s.join)
		}
	}
}

// TestStateFlateModel: over random event sequences that keep
// memberlist's contract (NotifyJoin for a node not alive, NotifyUpdate
// for an alive one whose metadata changed, NotifyLeave for an alive
// one), the kind of each push/pull state is the one stateReaders, the
// set this table replaced, chose: compressed exactly when no alive
// member lacks metaStateFlate. With reap zero, every step prunes the dead
// members, so a rejoin also starts from a fresh entry.
func TestStateFlateModel(t *testing.T) {
	now := time.Now()
	v1 := append([]byte{metaVersion1}, encodeMeta(now, false)[1:9]...)
	metas := [][]byte{
		encodeMeta(now, false), encodeMeta(now, true), // current
		append(encodeMeta(now, true)[:9:9], metaServes|metaGreets), // session 12
		append(encodeMeta(now, false)[:9:9], metaGreets),           // session 12, no services
		v1, nil, // older
	}
	for _, reap := range []time.Duration{0, time.Hour} {
		t.Run("reap="+reap.String(), func(t *testing.T) {
			c, d := newOffline(t, "self")
			c.reap = reap
			d.NotifyJoin(&memberlist.Node{Name: "self", Addr: net.ParseIP("127.0.0.1"), Port: 7946, Meta: encodeMeta(now, false)})
			rng := rand.New(rand.NewPCG(1, uint64(reap)))
			alive := map[string][]byte{} // name -> metadata, as memberlist holds it
			plain := map[string]bool{}   // the model: stateReaders' set
			for step := range 5000 {
				name := "n" + strconv.Itoa(rng.IntN(5))
				meta := metas[rng.IntN(len(metas))]
				n := &memberlist.Node{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: 7946, Meta: meta}
				nm, _ := decodeMeta(meta)
				var what string
				switch old, ok := alive[name]; {
				case !ok:
					what = "join"
					d.NotifyJoin(n)
				case rng.IntN(2) == 0 && !bytes.Equal(old, meta):
					what = "update"
					d.NotifyUpdate(n)
				default:
					what, n.Meta = "leave", old
					d.NotifyLeave(n)
				}
				if what == "leave" {
					delete(alive, name)
					delete(plain, name)
				} else {
					alive[name] = meta
					if nm.flate {
						delete(plain, name)
					} else {
						plain[name] = true
					}
				}
				c.Members() // prunes
				want := byte(kindStateFlate)
				if len(plain) > 0 {
					want = kindState
				}
				if got := d.LocalState(false)[1]; got != want {
					t.Fatalf("step %d, %s %s with meta %x: push/pull state kind %d, want %d (plain alive: %v)", step, what, name, n.Meta, got, want, plain)
				}
			}
		})
	}
}

// TestStateFlateLive: with real memberlist instances, whose own goroutines
// call NotifyJoin and NotifyUpdate (SetServices re-advertises), nodes of
// this release send each other compressed push/pull states, and a join's
// state stays plain.
func TestStateFlateLive(t *testing.T) {
	a, b := newNode(t, "a", "test", 7001), newNode(t, "b", "test", 7002)
	join(t, b, a)
	b.SetServices([]Service{{Name: "web", Port: 80}}) // an update of b's metadata on a
	for _, c := range []*Cluster{a, b} {
		d := &delegate{c: c}
		waitFor(t, c.LocalNode()+" compresses its state", func() error {
			if len(c.Members()) != 2 {
				return fmt.Errorf("members %v, want a and b", c.Members())
			}
			if got := d.LocalState(false)[1]; got != kindStateFlate {
				return fmt.Errorf("push/pull state kind %d, want %d", got, kindStateFlate)
			}
			return nil
		})
		if got := d.LocalState(true)[1]; got != kindState {
			t.Errorf("%s: join state kind %d, want %d", c.LocalNode(), got, kindState)
		}
	}
	waitFor(t, "a has b's new metadata", func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if m := a.members["b"]; m == nil || m.offer != offerServices {
			return fmt.Errorf("b's metadata on a does not say it serves (NotifyUpdate)")
		}
		return nil
	})
	if got := (&delegate{c: a}).LocalState(false)[1]; got != kindStateFlate {
		t.Errorf("a after b's metadata update: push/pull state kind %d, want %d", got, kindStateFlate)
	}
}

// TestStateFlateMerged: two nodes exchange compressed states in their
// periodic push/pulls and merge each other's records from them.
func TestStateFlateMerged(t *testing.T) {
	rs := simRecords(3)
	_, d := newOffline(t, "self")
	d.NotifyJoin(&memberlist.Node{Name: "self", Addr: net.ParseIP("127.0.0.1"), Port: 7946, Meta: encodeMeta(time.Now(), false)})
	for _, r := range rs {
		d.NotifyJoin(&memberlist.Node{Name: r.Node, Addr: net.ParseIP(r.Addr), Port: 7946, Meta: encodeMeta(time.Now(), true)})
	}
	b, err := encodeStateFlate(rs)
	if err != nil {
		t.Fatal(err)
	}
	d.MergeRemoteState(b, false)
	got := map[string]uint64{}
	for _, e := range d.c.Catalog() {
		got[e.Node] = e.Version
	}
	for _, r := range rs {
		if got[r.Node] != r.Version {
			t.Errorf("catalog has %s at version %d after a compressed state, want %d", r.Node, got[r.Node], r.Version)
		}
	}
}

func BenchmarkStateFlate(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		rs := simRecords(n)
		b.Run("encode/"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encodeStateFlate(rs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("encode_plain/"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encodeState(rs); err != nil {
					b.Fatal(err)
				}
			}
		})
		packed, _ := encodeStateFlate(rs)
		plain, _ := encodeState(rs)
		b.Run("decode/"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeState(packed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode_plain/"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeState(plain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFlateChurn: the delegate path that decides whether a push/pull
// state is compressed, in a cluster of 1,000 alive members: one member
// joins as an older release (no metaStateFlate), a state is built, it
// leaves, a state is built again.
func BenchmarkFlateChurn(b *testing.B) {
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	d := &delegate{c: c}
	now := time.Now()
	node := func(name string, meta []byte) *memberlist.Node {
		return &memberlist.Node{Name: name, Addr: net.ParseIP("127.0.0.1"), Port: 7946, Meta: meta}
	}
	d.NotifyJoin(node("self", encodeMeta(now, false)))
	for i := range 1000 {
		d.NotifyJoin(node("n"+strconv.Itoa(i), encodeMeta(now, true)))
	}
	old := node("old", nil)
	b.ReportAllocs()
	for b.Loop() {
		d.NotifyJoin(old)
		if d.LocalState(false)[1] != kindState {
			b.Fatal("compressed state with an older member alive")
		}
		d.NotifyLeave(old)
		if d.LocalState(false)[1] != kindStateFlate {
			b.Fatal("plain state with every member reading flate")
		}
	}
}
