// responder.go: answering queries and feeding responses to discovery.

package announce

import (
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// handle answers a query received on conn (unicast: the socket for direct
// unicast queries) or feeds a response to peer discovery.
func (s *Server) handle(so *socket, conn *net.UDPConn, b []byte, src netip.AddrPort, unicast bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.handlers.Add(1)
	defer s.handlers.Done()
	in, err := s.receiveLocked(so, b, src, unicast, s.now())
	s.mu.Unlock()
	if err != nil {
		s.log.Debug("malformed mdns packet", "iface", so.iface, "peer", src, "err", err)
		return
	}
	for _, p := range in.peers {
		select {
		case s.peers <- p:
			s.log.Debug("peer seen", "peer", p.Node, "addr", p.Addr, "gossip", p.GossipPort, "iface", p.Iface)
		default:
			s.log.Debug("peer dropped, OnPeer is slow", "peer", p.Node)
		}
	}
	if len(in.reannounce) > 0 {
		s.sendRecords(so, in.reannounce, sendAnnounce)
	}
	switch {
	case in.reply == nil:
	case in.dst != mdnsGroup:
		s.send(so, conn, in.reply, in.dst) // unicast and legacy: at once
	case shared(in.reply):
		s.deferAnswer(so, in.reply)
	default:
		s.multicastAnswer(so, in.reply)
	}
}

// received is what receiveLocked makes of a packet.
type received struct {
	peers      []Peer         // from a response
	reannounce []dns.RR       // ours, understated in a response (zone.understated)
	reply      *dns.Msg       // to a query; nil: none
	dst        netip.AddrPort // where reply goes
}

// receiveLocked decodes packet b received on so from src (unicast: on the
// socket for direct unicast queries) and returns the peers it reports or
// the reply it needs. Packets from off the link are dropped silently
// (RFC 6762 §5.5, §11): nobody beyond the link may query or feed us. A
// non-nil error means b is not a DNS message.
func (s *Server) receiveLocked(so *socket, b []byte, src netip.AddrPort, unicast bool, now time.Time) (received, error) {
	if !so.loopback && !onLink(so.nets, src.Addr()) {
		return received{}, nil
	}
	var m dns.Msg
	if err := m.Unpack(b); err != nil {
		return received{}, err
	}
	if m.Response {
		if ignoredResponse(&m, src) {
			return received{}, nil
		}
		return received{peers: s.disc.parse(&m, src, so.iface, now), reannounce: so.zone.understated(&m)}, nil
	}
	if !unicast && ownQueryLocked(so, b, src, now) {
		return received{}, nil // don't answer ourselves
	}
	if src.Port() == mdnsPort && s.holdTruncatedLocked(so, &m, src, unicast) {
		return received{}, nil // answered later, or not at all
	}
	reply, dst := respond(so.zone, &m, src, unicast)
	if reply != nil && s.thinPeerAnswerLocked(&m, src, dst) {
		return received{}, nil
	}
	return received{reply: reply, dst: dst}, nil
}

// peerAnswerers is about how many members of a cluster answer one
// newcomer's peer query (see thinPeerAnswerLocked).
const peerAnswerers = 8

// thinPeerAnswerLocked reports whether to leave unanswered query m from
// src, whose answer would go to dst: a unicast (QU) peer query from
// another node's mDNS stack, while this node knows of more than
// peerAnswerers nodes, with probability 1-peerAnswerers/n. n is the
// larger of the members of its cluster and the peers whose PTR records it
// holds (linkPeersLocked): when a hundred nodes start together, each is
// still alone or in a cluster of a few when the others' first queries
// arrive, but it has already read most of their announcements. A newcomer
// needs a few peers to join (the mesh joins three), not all of them: when
// a hundred nodes started together every query drew 99 unicast answers,
// each parsed and handed to the join gate by the querier, and answering
// was about a tenth of the nodes' start-up CPU (issue 10, session 5
// profile). A query is left unanswered by all with probability about
// e^-peerAnswerers (0.03 %); the querier asks again while it is alone.
// Multicast answers, legacy queries (dig, from a port other than 5353)
// and queries for services are always answered.
func (s *Server) thinPeerAnswerLocked(m *dns.Msg, src, dst netip.AddrPort) bool {
	n := max(s.members, s.linkPeersLocked())
	if dst == mdnsGroup || src.Port() != mdnsPort || n <= peerAnswerers {
		return false
	}
	for _, q := range m.Question {
		if !equalName(q.Name, peerFQDN) {
			return false
		}
	}
	return s.chance() >= float64(peerAnswerers)/float64(n)
}

// linkPeersLocked is how many nodes of the mesh are on the link, as far as
// mDNS tells: the peer PTR records held (at most maxHosts). A node that
// died without a goodbye counts until its record expires (the TTL, 120s
// by default), so a newcomer may then get fewer than peerAnswerers
// answers; it asks again while it is alone.
func (s *Server) linkPeersLocked() int { return len(s.disc.ptrs) }
