// schedule.go: run, the one goroutine that times announcements, queries and rescans.

package announce

import (
	"maps"
	"slices"
	"time"
)

// job is a pending announcement.
type job struct {
	sock *socket         // nil: every socket
	only map[string]bool // service types; nil: all
	due  time.Time
	left int
}

// run owns timing: announcements, peer queries and interface rescans.
func (s *Server) run(initial []*socket) {
	now := time.Now()
	var jobs []job
	for _, so := range initial {
		jobs = append(jobs, job{sock: so, due: now, left: announceCount})
	}
	q := newQueries(s.cfg.QueryMin, s.cfg.QueryMax, now)
	every := s.cfg.RescanInterval
	var changes <-chan struct{}
	if s.watch != nil {
		// Told of changes: the timer is only a safety net.
		changes, every = s.watch.changes(), max(every, watchedRescan)
	}
	rescan := time.NewTicker(every)
	defer rescan.Stop()
	rescanNow := func() {
		for _, so := range s.rescan() {
			now := time.Now()
			jobs = append(jobs, job{sock: so, due: now, left: announceCount})
			s.query(so)
			q.sent(so, now)
		}
	}
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		now = time.Now()
		jobs = s.runJobs(jobs, now)
		s.mu.Lock()
		seen, quiet := s.disc.seen, s.quiet
		s.mu.Unlock()
		q.setQuiet(quiet, now)
		send, next := q.due(now, s.sockets(), seen)
		for _, so := range send {
			s.query(so)
		}
		for _, j := range jobs {
			if j.due.Before(next) {
				next = j.due
			}
		}
		wake.Reset(time.Until(next))
		select {
		case <-s.stop:
			return
		case <-wake.C:
		case <-s.quietNow: // setQuiet above picks it up
		case <-s.queryNow:
			s.mu.Lock()
			s.disc.forget()
			s.mu.Unlock()
			q.ask(s.sockets())
		case <-s.changed:
			if only := s.sendGoodbyes(); len(only) > 0 {
				jobs = append(jobs, job{only: only, due: time.Now(), left: announceCount})
			}
		case <-rescan.C:
			rescanNow()
		case <-changes:
			rescanNow()
		}
	}
}

// watchedRescan is how often run lists the interfaces when it is told of
// changes anyway (ifaceWatch).
const watchedRescan = time.Minute

// sockets returns the active sockets.
func (s *Server) sockets() []*socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.socks))
}

// runJobs sends the announcements that are due and returns those left.
func (s *Server) runJobs(jobs []job, now time.Time) []job {
	out := jobs[:0]
	for _, j := range jobs {
		if now.Before(j.due) {
			out = append(out, j)
			continue
		}
		var include func(string) bool
		if j.only != nil {
			include = func(t string) bool { return j.only[t] }
		}
		if j.left < announceCount && s.skipPeerRepeat() {
			only := include
			include = func(t string) bool { return t != peerFQDN && (only == nil || only(t)) }
		}
		for _, t := range s.targets(j.sock) {
			if t.zone != nil {
				s.sendRecords(t.sock, t.zone.records(include, true), sendAnnounce)
			}
		}
		if j.left--; j.left > 0 {
			// From the clock sendRecords noted the records with, after
			// the sends: from now, the repeat could come a moment less
			// than multicastGap after them and be left out whole.
			j.due = s.now().Add(announceGap)
			out = append(out, j)
		}
	}
	clear(jobs[len(out):])
	return out
}

// target is a snapshot of an active socket and its records.
type target struct {
	sock *socket
	zone *zone // nil: no records
}

// targets snapshots so (if still active), or every active socket when so
// is nil.
func (s *Server) targets(so *socket) []target {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []target
	for _, cur := range s.socks {
		if so == nil || cur == so {
			out = append(out, target{sock: cur, zone: cur.zone})
		}
	}
	return out
}

// sendGoodbyes sends the pending goodbyes and returns the service types
// to announce.
func (s *Server) sendGoodbyes() map[string]bool {
	s.mu.Lock()
	byes, only := s.goodbyes, s.changes
	s.goodbyes, s.changes = nil, make(map[string]bool)
	s.mu.Unlock()
	if len(byes) > 0 {
		for _, t := range s.targets(nil) {
			z, err := newZone(s.id, t.sock.addr, byes)
			if err != nil {
				s.log.Warn("goodbye not sent", "iface", t.sock.iface, "err", err)
				continue
			}
			s.sendRecords(t.sock, z.records(func(t string) bool { return t != peerFQDN }, false), sendGoodbye)
		}
		for _, b := range byes {
			s.log.Debug("service withdrawn", "service", b.Name)
		}
	}
	return only
}

// skipPeerRepeat reports whether a repeated announcement leaves out this
// node's peer records: when it is in a cluster of more than
// peerAnswerers (SetMembers). Gossip spreads the node to every member
// then, and a node of another group learns it when the groups merge, so
// the repeat, which covers a lost first announcement (RFC 6762 §8.3),
// would only be read by every node on the link: when 100 nodes start
// together, 100 repeats a second in are 10,000 packets to read. Service
// records, which other mDNS browsers cache, are still repeated.
func (s *Server) skipPeerRepeat() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members > peerAnswerers
}
