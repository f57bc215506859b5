package gossip

import "github.com/hashicorp/memberlist"

// How often a record is passed on.
//
// memberlist sends each queued broadcast RetransmitMult × ceil(log10(N+1))
// times (16 at 1,000 nodes with the LAN's 4), each time to one random
// member. Every member queues a newcomer's record, and the newcomer queues
// the record of every member with services that it learns in its join's
// push/pull, so a start of N nodes leaves about N records queued on every
// node. At that many sends each, the queue took tens of seconds to
// drain: in a 401-node simulation (session 9) 251 records per node were
// still queued 10 s after the build ended and nodes sent 17.6 KB/s each;
// at 1,000 nodes 722 were queued when the idle window opened (session 8).
//
// (Since session 12 a newcomer no longer queues the records of its join's
// push/pull, see passOn; every member still queues the newcomer's.)
//
// A member's first record does not need that many copies: its owner sends
// it to every member it learns of when it announces services (greet) and
// on every change (pushSelf), a member alive without a record here is
// asked for it (want.go), and push/pull carries all records. So a first record of another node is
// passed on firstRecordMult × ceil(log10(N+1)) times: still an epidemic
// (each node that hears it sends it on), for packets the direct sends
// lose. What nothing else repairs keeps the full count: this node's own
// record, a newer record of a member whose older one this node had (an
// update: a node holding the old one never asks), and a leave (a left node
// is not alive, so nobody asks it).
const firstRecordMult = 1

// passOn says whether a record merged here, newer than any this node had,
// is queued for gossip (queue), and whether in the first-record queue
// (first). had: this node had an older record of the member; pushPull:
// it came in a push/pull's state; peers: it is that push/pull peer's own
// record (pushState sends it first).
//
// From gossip every such record is passed on: it is new to the cluster,
// and each node that hears it first sends it on (an epidemic). From a
// push/pull only an update or a leave is (nothing else repairs those),
// and a first record only when it is the peer's own and carries something
// to route to. Every other first record in a push/pull is one the peer
// learnt earlier from someone else, so the cluster has had it for a
// while. A node that joins learns the whole catalog in its join's
// push/pull, and passing all of it on made the newest nodes of a start
// queue nearly N records each: at 1,000 simulated nodes 257 records per
// node were still queued 30 s after the build (session 9; 35 with this
// rule, session 12, where what kept the newest nodes busy longest was
// memberlist's own re-broadcast of the same push/pull's members). Those
// records reach whoever lacks them anyway: from their owners (greet and
// pushSelf), by asking (want.go) and by the next push/pull. A first
// record with nothing to route to (no services, none down) is not passed
// on from a push/pull even when it is the peer's: a start of 100 nodes
// sent such records RetransmitMult × log10(N) times each and kept every
// gossip packet full for seconds (session 8); it spreads from its node's
// own broadcast.
func passOn(r record, had, pushPull, peers bool) (queue, first bool) {
	first = !had && !r.Left
	if !pushPull || !first {
		return true, first
	}
	return peers && (len(r.Services) > 0 || len(r.Down) > 0), true
}

// broadcasts holds the records queued for gossip in two queues of
// memberlist's, one per transmit count (a TransmitLimitedQueue has one).
// The queues do not invalidate each other: a first record of a node
// still queued when its update is queued in full goes out its few
// remaining times. That is harmless, because a receiver keeps the highest
// version, and rare: updates are operators' changes.
type broadcasts struct {
	full  memberlist.TransmitLimitedQueue // RetransmitMult: own record, updates, leaves
	first memberlist.TransmitLimitedQueue // firstRecordMult: first records of others
}

// newBroadcasts returns empty queues; numNodes is memberlist's count of
// alive members, which scales both transmit counts.
func newBroadcasts(retransmitMult int, numNodes func() int) *broadcasts {
	q := &broadcasts{}
	q.full.RetransmitMult, q.full.NumNodes = retransmitMult, numNodes
	q.first.RetransmitMult, q.first.NumNodes = firstRecordMult, numNodes
	return q
}

// queue adds b, a record of node b.node, to the full queue, or to the
// first-record queue when first, replacing a record of the same node
// queued there, and prunes that queue to maxRetain records, dropping the
// most transmitted first. (Only a queue that has held a record can be
// pruned: memberlist's Prune reads a tree that QueueBroadcast creates.)
func (q *broadcasts) queue(b *broadcast, first bool, maxRetain int) {
	tq := &q.full
	if first {
		tq = &q.first
	}
	tq.QueueBroadcast(b)
	tq.Prune(maxRetain)
}

// GetBroadcasts returns queued records that fit in limit bytes, each
// costing overhead more: the full queue's first, then first records in
// what is left, so a change nothing else repairs is never crowded out by
// a start's records.
func (q *broadcasts) GetBroadcasts(overhead, limit int) [][]byte {
	out := q.full.GetBroadcasts(overhead, limit)
	used := 0
	for _, b := range out {
		used += overhead + len(b)
	}
	if limit-used <= overhead {
		return out
	}
	return append(out, q.first.GetBroadcasts(overhead, limit-used)...)
}

// NumQueued is the number of records queued in both queues.
func (q *broadcasts) NumQueued() int { return q.full.NumQueued() + q.first.NumQueued() }

// NumNodes is the alive member count the transmit counts are scaled by.
func (q *broadcasts) NumNodes() int { return q.full.NumNodes() }
