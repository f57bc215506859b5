package gossip

import (
	"net/netip"
	"testing"
	"time"
)

// FuzzUserMessages feeds NotifyMsg's other decoders (the kinds besides
// a record broadcast, which FuzzDecodeRecord covers) and the metadata and
// ack payload decoders with any bytes: none may panic, and what they
// accept must be what their callers rely on. greeted and answerWantFrom
// call netip.MustParseAddr on the address a message gives, so an address
// a decoder lets through that netip.ParseAddr refuses would let one
// packet crash the node.
func FuzzUserMessages(f *testing.F) {
	rec := validRecord()
	for _, enc := range []func() ([]byte, error){
		func() ([]byte, error) { return encodeRefused("b") },
		func() ([]byte, error) { return encodeWant("b") },
		func() ([]byte, error) { return encodeWantFrom(wantFrom{Node: "b", Addr: "10.0.0.2", Port: 7946}) },
		func() ([]byte, error) {
			return encodeGreeting(greetMsg{Record: rec, Addr: "10.0.0.1", Port: 7946, Up: int64(time.Second)})
		},
	} {
		b, err := enc()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(msg(kindWantFrom, `{"node":"b","addr":"fe80::1%eth0","port":7946}`))
	f.Add(msg(kindGreet, `{"record":{"node":"a","addr":"::1","version":1},"addr":"::ffff:10.0.0.1","port":1}`))
	f.Add(encodeMeta(time.Unix(0, 1), true))
	f.Add(encodeDigest(3))
	f.Fuzz(func(t *testing.T, b []byte) {
		if w, err := decodeWantFrom(b); err == nil {
			if a, err := netip.ParseAddr(w.Addr); err != nil || w.Port < 1 || w.Port > 65535 || a.Zone() != "" {
				t.Fatalf("decodeWantFrom accepted %+v", w)
			}
		}
		if g, err := decodeGreeting(b); err == nil {
			if _, err := netip.ParseAddr(g.Addr); err != nil || g.Port < 1 || g.Port > 65535 {
				t.Fatalf("decodeGreeting accepted %+v", g)
			}
			if err := validateRecord(&g.Record, time.Now()); err != nil {
				t.Fatalf("decodeGreeting accepted a record validateRecord refuses: %v", err)
			}
		}
		if n, err := decodeRefused(b); err == nil && checkName("node", n) != nil {
			t.Fatalf("decodeRefused accepted %q", n)
		}
		if n, err := decodeWant(b); err == nil && checkName("node", n) != nil {
			t.Fatalf("decodeWant accepted %q", n)
		}
		decodeMeta(b)
		if n, ok := decodeDigest(b); ok && (n < 0 || n > 1<<24) {
			t.Fatalf("decodeDigest accepted %d", n)
		}
	})
}
