package gossip

import (
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Member-count digests: anti-entropy between push/pulls.
//
// memberlist learns of members two ways: alive messages, which each node
// gossips a few times (RetransmitMult × log10 N) and then drops, and
// full-state push/pulls, which it spaces by cluster size: 30 s up to 32
// members, 90 s at 100, 180 s at 1,000. A node that misses a member's
// alive messages (a lost packet, a full receive queue, or joining while
// they went round, unknown to the senders) lacks the member until its next
// push/pull. In the 1,000-node simulation (session 7) that was common: in
// 21 of the first 75 batches of ten joiners some node still lacked a
// joiner 5 s (simulated) later, old members as well as other joiners, and
// the build waited minutes on them.
//
// So every ack carries the acking node's count of alive members
// (AckPayload, two to four bytes), and a node whose probes keep finding
// peers that count more members than it does, while its own count does
// not grow, exchanges full state with such a peer (digestPersist, then at
// most once per digestCooldown). A node that is still learning members
// (its count grows, as it does while a cluster forms) sends nothing extra,
// and while the counts agree nothing is sent beyond the payload.

// digestVersion is the first byte of the ack payload; a payload without it
// (an older release sends none) is ignored.
const digestVersion = 1

// digestPersist and digestCooldown in probe intervals: a node must find
// itself behind, with its own count flat, over two of its probes' worth
// of time (a dead or alive message in flight settles within about one),
// and syncs at most once per ten.
const (
	digestPersistProbes  = 2
	digestCooldownProbes = 10
)

func encodeDigest(alive int) []byte {
	return binary.AppendUvarint([]byte{digestVersion}, uint64(max(alive, 0)))
}

// decodeDigest returns the member count in an ack payload, or false for a
// payload of another version or a malformed one.
func decodeDigest(b []byte) (int, bool) {
	if len(b) < 2 || b[0] != digestVersion {
		return 0, false
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > 1<<24 {
		return 0, false
	}
	return int(n), true
}

// digest is a Cluster's state for the digest check. memberlist reports one
// probe at a time, but the mutex keeps it simple and race-free.
type digest struct {
	mu                sync.Mutex
	persist, cooldown time.Duration // set in New; persist <= 0: off
	behindSince       time.Time     // first probe of the current behind streak; zero: not behind
	ownAt             int           // own alive count at behindSince
	lastSync          time.Time
}

// observe records one probe's outcome: this node counts own alive members,
// the probed peer peer. It reports whether to exchange full state with the
// peer now.
func (d *digest) observe(own, peer int, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.persist <= 0 {
		return false
	}
	if peer <= own {
		d.behindSince = time.Time{}
		return false
	}
	if d.behindSince.IsZero() || own > d.ownAt {
		// Behind, but new to it or still learning: start (again) from now.
		d.behindSince, d.ownAt = now, own
		return false
	}
	if now.Sub(d.behindSince) < d.persist || (!d.lastSync.IsZero() && now.Sub(d.lastSync) < d.cooldown) {
		return false
	}
	d.lastSync, d.behindSince = now, time.Time{}
	return true
}

// AckPayload is memberlist's PingDelegate: the count of alive members this
// node sees, in every ack it sends.
func (d *delegate) AckPayload() []byte { return encodeDigest(int(d.c.numAlive.Load())) }

// NotifyPingComplete is memberlist's PingDelegate: a probe of other was
// acked with payload. It only looks at counts; the exchange runs in a
// goroutine Shutdown waits for, so memberlist's probe loop never blocks.
func (d *delegate) NotifyPingComplete(other *memberlist.Node, _ time.Duration, payload []byte) {
	peer, ok := decodeDigest(payload)
	if !ok || other == nil {
		return
	}
	c := d.c
	if !c.digest.observe(int(c.numAlive.Load()), peer, time.Now()) {
		return
	}
	// Copied now: other is memberlist's, and it may change it later.
	name, addr := other.Name, net.JoinHostPort(other.Addr.String(), strconv.Itoa(int(other.Port)))
	c.goWithMemberlist(func(ml *memberlist.Memberlist) {
		c.log.Debug("member count behind a peer's: exchanging full state", "peer", name, "peer_count", peer, "own_count", c.numAlive.Load())
		// Bounded by memberlist's TCPTimeout; racing Shutdown it only fails.
		if _, err := ml.Join([]string{addr}); err != nil {
			c.log.Debug("full-state exchange failed", "peer", name, "err", err)
		}
	})
}

var _ memberlist.PingDelegate = (*delegate)(nil)
