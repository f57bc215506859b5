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
	peers []Peer         // from a response
	reply *dns.Msg       // to a query; nil: none
	dst   netip.AddrPort // where reply goes
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
		return received{peers: s.disc.parse(&m, src, so.iface, now)}, nil
	}
	if !unicast && ownQueryLocked(so, b, src, now) {
		return received{}, nil // don't answer ourselves
	}
	reply, dst := respond(so.zone, &m, src, unicast)
	return received{reply: reply, dst: dst}, nil
}
