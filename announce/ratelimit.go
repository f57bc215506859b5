// ratelimit.go: the RFC 6762 §6 rules for multicast: one record per second, delayed shared answers.

package announce

import (
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// sendKind says how sendRecords treats the RFC 6762 §6 rate limit.
type sendKind int

const (
	// sendAnnounce leaves out records multicast within multicastGap,
	// repeats included: a repeat is announceGap after its first
	// announcement (runJobs times it from the send), and another series
	// (a service added meanwhile) or an answer may have multicast a
	// record since. A record left out went out less than a second before,
	// so it is not missed.
	sendAnnounce sendKind = iota
	// sendGoodbye withdraws records (TTL 0), unlimited, and forgets when
	// they were multicast so a re-added record is announced at once.
	sendGoodbye
)

// sendRecords multicasts records on so as an announcement or, for
// sendGoodbye, a goodbye. Nothing is sent when no record is left.
func (s *Server) sendRecords(so *socket, rrs []dns.RR, kind sendKind) {
	var m *dns.Msg
	s.mu.Lock()
	switch kind {
	case sendGoodbye:
		m = goodbye(rrs)
		for _, rr := range m.Answer {
			delete(so.multicast, recordKey(rr))
		}
	default:
		m = announcement(limitLocked(so, rrs, s.now(), true))
	}
	s.mu.Unlock()
	if len(m.Answer) > 0 {
		s.send(so, so.conn, m, mdnsGroup)
	}
}

// recordKey identifies a record for the rate limit: name, type, class
// and data, without TTL and cache-flush bit. A changed record (a new port
// in the SRV) is another record and is not held back.
func recordKey(rr dns.RR) string {
	c := dns.Copy(rr)
	c.Header().Ttl = 0
	c.Header().Class &^= cacheFlush
	return strings.ToLower(c.String())
}

// limitLocked notes that rrs are being multicast on so at now and returns
// them; with filter, those multicast there less than multicastGap ago are
// left out (RFC 6762 §6).
func limitLocked(so *socket, rrs []dns.RR, now time.Time, filter bool) []dns.RR {
	for k, t := range so.multicast { // our own records only: a few dozen
		if now.Sub(t) >= multicastGap {
			delete(so.multicast, k)
		}
	}
	if so.multicast == nil {
		so.multicast = make(map[string]time.Time)
	}
	out := rrs[:0:0]
	for _, rr := range rrs {
		k := recordKey(rr)
		if _, recent := so.multicast[k]; recent && filter {
			continue
		}
		so.multicast[k] = now
		out = append(out, rr)
	}
	return out
}

// multicastAnswer sends reply, a multicast answer, to the group on so,
// leaving out the records so no longer publishes (withdrawn since the
// reply was built) and those multicast there within multicastGap.
func (s *Server) multicastAnswer(so *socket, reply *dns.Msg) {
	s.mu.Lock()
	now := s.now()
	reply.Answer = so.zone.current(reply.Answer)
	reply.Extra = so.zone.current(reply.Extra)
	reply.Answer = limitLocked(so, reply.Answer, now, true)
	if len(reply.Answer) > 0 {
		reply.Extra = limitLocked(so, reply.Extra, now, true)
	}
	s.mu.Unlock()
	if len(reply.Answer) > 0 {
		s.send(so, so.conn, reply, mdnsGroup)
	}
}

// deferAnswer sends reply, a multicast answer with shared records, after
// a random 20-120ms (RFC 6762 §6), so that answers from many responders
// do not collide. Answers arriving meanwhile join it, so each socket has
// at most one waiting. Dropped on Close.
func (s *Server) deferAnswer(so *socket, reply *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if p := so.pending; p != nil {
		p.Answer = dedupe(append(p.Answer, reply.Answer...), nil)
		p.Extra = dedupe(append(p.Extra, reply.Extra...), p.Answer)
		return
	}
	so.pending = reply
	delay := sharedDelay + rand.N(sharedJitter)
	s.handlers.Go(func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
		s.mu.Lock()
		m := so.pending
		so.pending = nil
		s.mu.Unlock()
		s.multicastAnswer(so, m)
	})
}

// shared reports whether m answers with a shared record (a PTR).
func shared(m *dns.Msg) bool {
	return slices.ContainsFunc(m.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypePTR })
}
