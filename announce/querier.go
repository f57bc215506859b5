// querier.go: peer queries: their timing and recognising our own looped-back copies.

package announce

import (
	"net/netip"
	"slices"
	"time"
)

// queryNowGap is the least time between two peer queries on a socket
// when QueryNow asks for one (RFC 6762 §5.2).
const queryNowGap = time.Second

// queries is run's peer query timing. Periodic queries go out on every
// socket, QueryMin after the first and doubling up to QueryMax, or every
// QueryMax once a peer has been seen, or every quietEvery(QueryMax) while
// the caller says it is quiet (SetQuiet: the node is in a cluster whose
// membership protocol knows the peers already, RFC 6762 §5.2 "query less
// once the answers are known"). QueryNow asks for one extra query on
// each socket, sent at once unless that socket sent one less than
// queryNowGap ago, and then when the gap is up; it leaves the back-off
// alone, so calling it often (the mesh does while a node is alone) costs
// at most one query per second per socket. Owned by run.
type queries struct {
	min, max time.Duration
	interval time.Duration         // gap after the next periodic query while no peer is seen
	next     time.Time             // next periodic query
	last     map[*socket]time.Time // last query sent on each socket
	asked    map[*socket]bool      // sockets with a QueryNow query to send
	quiet    bool                  // see setQuiet
}

// quietEvery is the periodic query interval while quiet: rare enough that
// a cluster of hundreds costs a few packets a second in all, frequent
// enough that two groups of nodes that formed separate clusters (a
// partition at start-up) find each other again within minutes.
func quietEvery(queryMax time.Duration) time.Duration { return 10 * queryMax }

func newQueries(queryMin, queryMax time.Duration, now time.Time) *queries {
	return &queries{min: queryMin, max: queryMax, interval: queryMin, next: now,
		last: make(map[*socket]time.Time), asked: make(map[*socket]bool)}
}

// setQuiet switches the periodic queries to quietEvery, or back: leaving
// quiet (the node is alone again) starts the back-off over from QueryMin
// with a query at once.
func (q *queries) setQuiet(quiet bool, now time.Time) {
	if q.quiet == quiet {
		return
	}
	q.quiet = quiet
	if quiet {
		q.next = now.Add(quietEvery(q.max))
	} else {
		q.interval, q.next = q.min, now
	}
}

// ask notes a QueryNow for socks.
func (q *queries) ask(socks []*socket) {
	for _, so := range socks {
		q.asked[so] = true
	}
}

// sent notes a query sent on so at now.
func (q *queries) sent(so *socket, now time.Time) {
	q.last[so] = now
	delete(q.asked, so)
}

// due returns which of socks to query at now, noting them as sent, and
// when to call again. seen says whether a peer has been seen.
func (q *queries) due(now time.Time, socks []*socket, seen bool) (send []*socket, wake time.Time) {
	for so := range q.last {
		if !slices.Contains(socks, so) {
			delete(q.last, so)
			delete(q.asked, so)
		}
	}
	if !now.Before(q.next) {
		send = socks
		switch {
		case q.quiet:
			q.next = now.Add(quietEvery(q.max))
		case seen:
			q.next = now.Add(q.max)
		default:
			q.next = now.Add(q.interval)
			q.interval = min(2*q.interval, q.max)
		}
	}
	wake = q.next
	for _, so := range socks {
		if !q.asked[so] || slices.Contains(send, so) {
			continue
		}
		if at := q.last[so].Add(queryNowGap); now.Before(at) {
			if at.Before(wake) {
				wake = at
			}
			continue
		}
		send = append(send, so)
	}
	for _, so := range send {
		q.sent(so, now)
	}
	return send, wake
}

// query sends the peer query on so, or on every socket when so is nil.
// Where the socket for direct unicast queries is open the question asks
// for a unicast reply (QU, RFC 6762 §5.4): each peer answers this node
// alone, at once, even if it multicast its records a moment ago (the §6
// one-second rule holds back multicast answers only). A multicast (QM)
// question would make every peer's answer reach every node, N^2 packets
// for N nodes each querying, for answers only the querier needs; the
// others learn of a new node through gossip. The known peers go in the
// answer section (known-answer suppression, §7.1), so they stay silent.
func (s *Server) query(so *socket) {
	for _, t := range s.targets(so) {
		s.mu.Lock()
		// On loopback every node shares the address, and a unicast reply
		// to ADDR:5353 reaches only one of the sockets bound to it, often
		// not the asker's: ask for multicast answers there.
		m := peerQuery(t.sock.ucast != nil && !t.sock.loopback, s.disc.known(time.Now()))
		s.mu.Unlock()
		b, err := m.Pack()
		if err != nil {
			s.log.Warn("pack mdns query", "err", err)
			return
		}
		// Noted before the write: the looped-back copy may be read
		// before the write returns.
		s.mu.Lock()
		noteQueryLocked(t.sock, b, time.Now())
		s.mu.Unlock()
		s.sendBytes(t.sock, t.sock.conn, b, mdnsGroup)
	}
}

// ownQueryWindow is how long a query we sent is expected back through
// IP_MULTICAST_LOOP. The copy is delivered during the send, so this only
// bounds how long a lost copy is remembered.
const ownQueryWindow = 2 * time.Second

// ownQuery counts copies of one query we sent that have not come back.
type ownQuery struct {
	n    int
	sent time.Time // last sent
}

// noteQueryLocked remembers that query b is being sent on so, so that
// ownQueryLocked recognises the copy IP_MULTICAST_LOOP hands back.
func noteQueryLocked(so *socket, b []byte, now time.Time) {
	for k, q := range so.ownQueries {
		if now.Sub(q.sent) >= ownQueryWindow {
			delete(so.ownQueries, k)
		}
	}
	if so.ownQueries == nil {
		so.ownQueries = make(map[string]ownQuery)
	}
	q := so.ownQueries[string(b)]
	so.ownQueries[string(b)] = ownQuery{n: q.n + 1, sent: now}
}

// ownQueryLocked reports whether query b from src is the looped-back copy
// of one we sent on so, and if so consumes it. Our queries carry ID 0 like
// everyone's and the source address and port are shared with every mDNS
// stack on this host, so only the exact bytes, counted, tell ours apart:
// another host's (or local daemon's) identical query is still answered
// once our own copy has come back.
func ownQueryLocked(so *socket, b []byte, src netip.AddrPort, now time.Time) bool {
	if src.Port() != mdnsPort {
		return false
	}
	q, ok := so.ownQueries[string(b)]
	if !ok || now.Sub(q.sent) >= ownQueryWindow {
		return false
	}
	if q.n--; q.n == 0 {
		delete(so.ownQueries, string(b))
	} else {
		so.ownQueries[string(b)] = q
	}
	return true
}
