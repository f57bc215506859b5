// truncated.go: queries with the TC bit, whose known answers continue in more packets (RFC 6762 §7.2).

package announce

import (
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

const (
	// RFC 6762 §6, §7.2: the answer to a query with the TC bit waits a
	// random 400-500ms for the rest of its known answers.
	truncatedDelay  = 400 * time.Millisecond
	truncatedJitter = 100 * time.Millisecond
	// maxTruncated bounds the TC queries held per socket, one per source;
	// a source beyond it is answered at once, as if TC were clear.
	maxTruncated = 32
	// maxHeldRecords bounds the questions plus known answers one held
	// query gathers, about four full 9000-byte packets of compressed
	// PTRs. Known answers beyond it are answered anyway, questions beyond
	// it go unanswered: the querier asks again.
	maxHeldRecords = 1024
)

// heldQuery is a query with the TC bit waiting out truncatedDelay while
// its known answers arrive.
type heldQuery struct {
	query   *dns.Msg    // questions and known answers gathered so far
	unicast bool        // the first packet came to the socket for direct unicast queries
	stop    func() bool // cancels the timer (Server.afterFunc)
}

// add appends the questions and known answers of m, up to maxHeldRecords.
func (h *heldQuery) add(m *dns.Msg) {
	room := maxHeldRecords - len(h.query.Question) - len(h.query.Answer)
	qs := m.Question[:min(len(m.Question), max(room, 0))]
	h.query.Question = append(h.query.Question, qs...)
	room -= len(qs)
	h.query.Answer = append(h.query.Answer, m.Answer[:min(len(m.Answer), max(room, 0))]...)
}

// holdTruncatedLocked deals with query m from src (port 5353) on so when
// it belongs to a multi-packet known-answer list (RFC 6762 §7.2, §18.5)
// and reports whether it did; false leaves m to be answered as usual.
//
// A query with TC set and something of ours to answer is held for a
// random 400-500ms (truncatedDelay), then answered without what it and
// the packets that followed it list as known; a second TC query from the
// same source meanwhile joins it. A query without questions is such a
// following packet: its known answers join the query held for the same
// address and port, and it is not answered on its own (it asks nothing).
// Known answers from any other source do not count: that host knows them,
// not the querier. A TC query that asks for nothing we have is not held,
// and neither is one beyond maxTruncated held on so (it is answered at
// once, as before RFC 6762 §7.2 was heeded).
func (s *Server) holdTruncatedLocked(so *socket, m *dns.Msg, src netip.AddrPort, unicast bool) bool {
	held := so.held[src]
	switch {
	case len(m.Question) == 0:
		if held != nil {
			held.add(m)
		}
		return true
	case !m.Truncated:
		return false
	case held != nil:
		held.add(m)
		return true
	case len(so.held) >= maxTruncated:
		return false
	}
	if reply, _ := respond(so.zone, m, src, unicast); reply == nil {
		return false
	}
	held = &heldQuery{query: &dns.Msg{MsgHdr: m.MsgHdr}, unicast: unicast}
	held.add(m)
	if so.held == nil {
		so.held = make(map[netip.AddrPort]*heldQuery)
	}
	so.held[src] = held
	s.handlers.Add(1) // under mu while !closed: receiveLocked's caller checked
	held.stop = s.afterFunc(truncatedDelay+rand.N(truncatedJitter), func() { s.answerHeld(so, src, held) })
	return true
}

// answerHeld answers held, the query from src held on so, once its delay
// is up. The delay stood for the shared-record delay of RFC 6762 §6 too,
// so a multicast answer goes out at once (within the one-second rule).
func (s *Server) answerHeld(so *socket, src netip.AddrPort, held *heldQuery) {
	defer s.handlers.Done()
	s.mu.Lock()
	if so.held[src] != held { // dropped: Close, or the socket went
		s.mu.Unlock()
		return
	}
	delete(so.held, src)
	var reply *dns.Msg
	var dst netip.AddrPort
	if !s.closed {
		reply, dst = respond(so.zone, held.query, src, held.unicast)
		if reply != nil && s.thinPeerAnswerLocked(held.query, src, dst) {
			reply = nil
		}
	}
	s.mu.Unlock()
	switch {
	case reply == nil:
	case dst != mdnsGroup:
		conn := so.conn
		if held.unicast {
			conn = so.ucast
		}
		s.send(so, conn, reply, dst)
	default:
		s.multicastAnswer(so, reply)
	}
}

// dropHeldLocked forgets the queries held on so, stopping their timers.
func (s *Server) dropHeldLocked(so *socket) {
	for src, held := range so.held {
		if held.stop() {
			s.handlers.Done() // answerHeld will not run
		}
		delete(so.held, src)
	}
}
