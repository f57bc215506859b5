package gossip

import (
	"bytes"
	"encoding/binary"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// labelled prefixes b with memberlist's label header for label.
func labelled(label string, b []byte) []byte {
	return append(append([]byte{wireLabel, byte(len(label))}, label...), b...)
}

// compound frames parts as memberlist's compound message.
func compound(parts ...[]byte) []byte {
	out := []byte{wireCompound, byte(len(parts))}
	for _, p := range parts {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
	}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestAliveDedupFilter: an alive message goes to memberlist keepCopies
// times within dedupWindow, alone or as part of a compound; the other
// parts of a compound stay, in order, under the same label; packets it
// cannot read (encrypted, compressed, truncated) pass untouched.
func TestAliveDedupFilter(t *testing.T) {
	aliveA := []byte{wireAlive, 0x86, 'a'} // the bytes after the type are opaque to the filter
	aliveB := []byte{wireAlive, 0x86, 'b'}
	ping := []byte{0, 1, 2, 3}
	user := []byte{8, 'r', 'e', 'c'}
	t0 := time.Unix(1000, 0)

	t.Run("single alive", func(t *testing.T) {
		d := newAliveDedup()
		pkt := labelled("ambassador", aliveA)
		for i := range keepCopies {
			if got := d.filter(bytes.Clone(pkt), t0); !bytes.Equal(got, pkt) {
				t.Fatalf("copy %d: got %v, want it untouched", i+1, got)
			}
		}
		if got := d.filter(bytes.Clone(pkt), t0); got != nil {
			t.Fatalf("copy %d: got %v, want it dropped", keepCopies+1, got)
		}
		if got := d.filter(labelled("ambassador", aliveB), t0); got == nil {
			t.Fatal("another alive message dropped")
		}
		if got := d.filter(bytes.Clone(pkt), t0.Add(dedupWindow)); !bytes.Equal(got, pkt) {
			t.Fatalf("after dedupWindow: got %v, want it untouched", got)
		}
	})

	t.Run("compound", func(t *testing.T) {
		d := newAliveDedup()
		pkt := labelled("ambassador", compound(ping, aliveA, user, aliveB))
		for range keepCopies {
			if got := d.filter(bytes.Clone(pkt), t0); !bytes.Equal(got, pkt) {
				t.Fatalf("got %v, want it untouched", got)
			}
		}
		want := labelled("ambassador", compound(ping, user))
		if got := d.filter(bytes.Clone(pkt), t0); !bytes.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		if got := d.filter(compound(aliveA, aliveB), t0); got != nil {
			t.Fatalf("a compound of repeats only, no label: got %v, want it dropped", got)
		}
	})

	t.Run("unreadable", func(t *testing.T) {
		d := newAliveDedup()
		for _, pkt := range [][]byte{
			labelled("ambassador", append([]byte{1}, aliveA...)), // encrypted (version 1)
			append([]byte{9}, aliveA...),                         // compressed
			compound(aliveA, aliveB)[:5],                         // truncated
			append(compound(aliveA), 0xff),                       // trailing bytes
			{wireLabel, 40, 'x'},                                 // truncated label
			{12, 0, 0, 0, 0, wireAlive},                          // with a checksum
		} {
			for i := range keepCopies + 2 {
				if got := d.filter(bytes.Clone(pkt), t0); !bytes.Equal(got, pkt) {
					t.Fatalf("%v, copy %d: got %v, want it untouched", pkt, i+1, got)
				}
			}
		}
	})

	t.Run("forget", func(t *testing.T) {
		d := newAliveDedup()
		for range keepCopies {
			d.filter(bytes.Clone(aliveA), t0)
		}
		d.forget()
		if got := d.filter(bytes.Clone(aliveA), t0); got == nil {
			t.Fatal("dropped after forget")
		}
	})
}

// TestTransportDropsRepeatedAlive: the transport a Cluster starts with
// hands memberlist an alive message keepCopies times and drops later
// copies, and every other packet still arrives, in order.
func TestTransportDropsRepeatedAlive(t *testing.T) {
	a, b := newTestTransport(t), newTestTransport(t)
	b.dedup.Store(newAliveDedup())
	to := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port()))
	alive := labelled("ambassador", []byte{wireAlive, 0x86, 'n', 'o', 'd', 'e'})
	other := labelled("ambassador", []byte{0, 'p', 'i', 'n', 'g'})
	for range keepCopies + 3 {
		if _, err := a.WriteTo(alive, to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.WriteTo(other, to); err != nil {
		t.Fatal(err)
	}
	for i := range keepCopies {
		if p := recvPacket(t, b); !bytes.Equal(p.Buf, alive) {
			t.Fatalf("packet %d: %v, want the alive message", i+1, p.Buf)
		}
	}
	if p := recvPacket(t, b); !bytes.Equal(p.Buf, other) {
		t.Fatalf("packet %d: %v, want the ping after the repeats were dropped", keepCopies+1, p.Buf)
	}
}

// TestConflictForgetsAlive: a name conflict memberlist reports lets
// repeats through again: a restarted node reclaiming its name from a new
// address is accepted on a repeat once the old owner is dead.
func TestConflictForgetsAlive(t *testing.T) {
	c, d := newOffline(t, "a")
	alive := []byte{wireAlive, 0x86, 'x'}
	now := time.Now()
	for range keepCopies {
		c.dedup.filter(bytes.Clone(alive), now)
	}
	if got := c.dedup.filter(bytes.Clone(alive), now); got != nil {
		t.Fatal("repeat not dropped")
	}
	d.NotifyConflict(&memberlist.Node{Name: "b", Addr: net.IPv4(10, 0, 0, 1), Port: 7946},
		&memberlist.Node{Name: "b", Addr: net.IPv4(10, 0, 0, 2), Port: 7946})
	if got := c.dedup.filter(bytes.Clone(alive), now); got == nil {
		t.Fatal("repeat dropped after a conflict")
	}
}
