package gossip

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"
)

// aliveDedup drops repeated copies of memberlist alive messages from
// incoming packets before memberlist decodes them.
//
// When a node learns of a new member (or a new incarnation of one) it
// queues the alive message it received for RetransmitMult×ceil(log10(N+1))
// transmissions (12 at 100 nodes), re-encoding the same struct, so every
// copy of one alive message is byte-for-byte the same wherever it comes
// from. When 100 nodes start together each node receives about 1,200 alive
// messages of which about 100 are news. memberlist decodes every one with
// reflection-driven msgpack (8-17 % of all start-up CPU in the profiles of
// sessions 10 and 11) and queues them ahead of every user message (its
// packetHandler takes alive messages first), so records that ride gossip
// waited behind the repeats. A copy that memberlist has already been handed
// changes nothing: aliveNode returns early for an incarnation it holds, and
// for an alive about this node with our own incarnation and metadata. Two
// cases where a copy can still matter are covered: memberlist may have
// dropped an earlier copy (its handoff queue holds 1,024 messages), so
// keepCopies copies go through; and a copy that conflicted with the
// address memberlist had for the node is accepted once the old owner is
// dead (a restarted node reclaiming its name), so a conflict forgets every
// seen message (forget, called from NotifyConflict).
//
// Only plain packets are read: with Keys the payload is encrypted, and
// encrypted or compressed packets, packets with a checksum and anything
// that does not parse go through untouched. Safe for concurrent use.
type aliveDedup struct {
	seed maphash.Seed

	mu    sync.Mutex
	seen  map[uint64]seenAlive // guarded by mu; by hash of the message bytes
	swept time.Time            // guarded by mu; last sweep of seen
}

// seenAlive is one alive message handed to memberlist.
type seenAlive struct {
	copies int       // copies let through
	first  time.Time // when the first one was
}

const (
	// keepCopies copies of one alive message go to memberlist.
	keepCopies = 2
	// dedupWindow is how long a message is remembered: a forming cluster's
	// repeats arrive within a few seconds (12 transmissions, GossipInterval
	// 200 ms, by every node that learnt the member at different moments).
	dedupWindow = 10 * time.Second
	// maxSeenAlive bounds the messages remembered; when full, new ones go
	// through unremembered.
	maxSeenAlive = 4096
)

// memberlist's wire constants (net.go, label.go; "only append" to the list,
// so they are stable).
const (
	wireAlive    = 4
	wireCompound = 7
	wireLabel    = 244
)

func newAliveDedup() *aliveDedup {
	return &aliveDedup{seed: maphash.MakeSeed(), seen: make(map[uint64]seenAlive)}
}

// filter returns pkt without the alive messages that were let through
// keepCopies times within dedupWindow, or nil when nothing is left. It
// returns pkt itself when it drops nothing, and may reuse pkt's memory.
func (d *aliveDedup) filter(pkt []byte, now time.Time) []byte {
	body := pkt
	if len(body) >= 2 && body[0] == wireLabel {
		n := 2 + int(body[1])
		if len(body) < n {
			return pkt
		}
		body = body[n:]
	}
	if len(body) < 1 {
		return pkt
	}
	switch body[0] {
	case wireAlive:
		if d.drop(body, now) {
			return nil
		}
		return pkt
	case wireCompound:
	default:
		return pkt
	}
	parts, ok := splitCompound(body[1:])
	if !ok {
		return pkt
	}
	keep := parts[:0:0]
	for _, p := range parts {
		if len(p) > 0 && p[0] == wireAlive && d.drop(p, now) {
			continue
		}
		keep = append(keep, p)
	}
	switch {
	case len(keep) == len(parts):
		return pkt
	case len(keep) == 0:
		return nil
	}
	// Rebuild: the label header as it was, then a compound of what is left.
	out := make([]byte, 0, len(pkt))
	out = append(out, pkt[:len(pkt)-len(body)]...)
	out = append(out, wireCompound, byte(len(keep)))
	for _, p := range keep {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
	}
	for _, p := range keep {
		out = append(out, p...)
	}
	return out
}

// splitCompound splits a compound message's payload (after its type byte)
// into its parts. It reports false for a truncated or overlong one, which
// memberlist then handles as it does now.
func splitCompound(b []byte) ([][]byte, bool) {
	if len(b) < 1 {
		return nil, false
	}
	n := int(b[0])
	b = b[1:]
	if len(b) < 2*n {
		return nil, false
	}
	parts := make([][]byte, n)
	lens, b := b[:2*n], b[2*n:]
	for i := range n {
		l := int(binary.BigEndian.Uint16(lens[2*i:]))
		if len(b) < l {
			return nil, false
		}
		parts[i], b = b[:l], b[l:]
	}
	if len(b) != 0 {
		return nil, false
	}
	return parts, true
}

// drop reports whether alive message m (type byte included) was let
// through keepCopies times within dedupWindow, and otherwise counts it.
func (d *aliveDedup) drop(m []byte, now time.Time) bool {
	h := maphash.Bytes(d.seed, m)
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Sub(d.swept) >= dedupWindow {
		for k, s := range d.seen {
			if now.Sub(s.first) >= dedupWindow {
				delete(d.seen, k)
			}
		}
		d.swept = now
	}
	s, ok := d.seen[h]
	if ok && now.Sub(s.first) >= dedupWindow {
		ok = false
	}
	if !ok {
		if len(d.seen) >= maxSeenAlive {
			return false
		}
		s = seenAlive{first: now}
	}
	if s.copies >= keepCopies {
		return true
	}
	s.copies++
	d.seen[h] = s
	return false
}

// forget lets every alive message through again (see aliveDedup).
func (d *aliveDedup) forget() {
	d.mu.Lock()
	clear(d.seen)
	d.mu.Unlock()
}
