// socket.go: the mDNS socket of one interface: open, read, send, rescan.

package announce

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// socket is the mDNS socket of one interface. A socket is replaced, not
// changed, when the interface's index or address changes.
type socket struct {
	iface string       // read-only
	index int          // read-only
	conn  *net.UDPConn // multicast, bound to 224.0.0.251:5353; read-only
	local netip.Addr   // the interface's own address; read-only
	ucast *net.UDPConn // bound to local:5353 for direct unicast queries; nil if that failed; read-only
	addr  netip.Addr   // A record address; read-only
	// loopback: the interface carries only this host's own packets, whose
	// source may be any local address (multicast on lo leaves with a
	// non-loopback source, 127/8 being host-scoped), so onLink is moot.
	loopback bool // read-only

	// nets are the interface's IPv4 prefixes, which a packet's source must
	// be in (onLink). Updated by rescan; guarded by Server.mu.
	nets []netip.Prefix
	// ownQueries are the queries we sent whose looped-back copy has not
	// been seen yet, by packet. Guarded by Server.mu.
	ownQueries map[string]ownQuery
	// multicast is when each record (recordKey) was last multicast here,
	// for the RFC 6762 §6 one-second rule. Guarded by Server.mu.
	multicast map[string]time.Time
	// pending is the multicast answer waiting out its shared-record
	// delay; later answers join it. Guarded by Server.mu.
	pending *dns.Msg
	// held are the queries with the TC bit waiting for the rest of their
	// known answers, by source (RFC 6762 §7.2; holdTruncatedLocked).
	// Guarded by Server.mu.
	held map[netip.AddrPort]*heldQuery

	// zone holds the records for addr and Server.services, built when the
	// socket becomes active and rebuilt by SetServices, so answering a
	// query builds nothing. nil if they cannot be built. Guarded by
	// Server.mu.
	zone *zone
}

// close closes both sockets.
func (so *socket) close() {
	so.conn.Close()
	if so.ucast != nil {
		so.ucast.Close()
	}
}

// writeUDP is Server.write outside tests.
func writeUDP(conn *net.UDPConn, b []byte, dst netip.AddrPort) error {
	_, err := conn.WriteToUDPAddrPort(b, dst)
	return err
}

// start starts the readers of so.
func (s *Server) start(so *socket) {
	s.wg.Go(func() { s.read(so, so.conn, false) })
	if so.ucast != nil {
		s.wg.Go(func() { s.read(so, so.ucast, true) })
	}
}

// send writes m, a response, to dst through conn, one of so's sockets: in
// packets of at most maxResponseSize unless m is a legacy unicast reply
// (it has a question; see splitResponse). Failures are logged at Debug:
// they come and go with interfaces, and rescans deal with those.
func (s *Server) send(so *socket, conn *net.UDPConn, m *dns.Msg, dst netip.AddrPort) {
	parts := []*dns.Msg{m}
	if len(m.Question) == 0 {
		parts = splitResponse(m, maxResponseSize)
	}
	for _, p := range parts {
		b, err := p.Pack()
		if err != nil {
			s.log.Warn("pack mdns message", "iface", so.iface, "err", err)
			return
		}
		s.sendBytes(so, conn, b, dst)
	}
}

// sendBytes is send for a packed message.
func (s *Server) sendBytes(so *socket, conn *net.UDPConn, b []byte, dst netip.AddrPort) {
	if err := s.write(conn, b, dst); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("send mdns message", "iface", so.iface, "dst", dst, "err", err)
	}
}

// read receives packets on conn, one of so's sockets, until it is closed.
func (s *Server) read(so *socket, conn *net.UDPConn, unicast bool) {
	buf := make([]byte, maxPacket)
	backoff := time.Duration(0)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, readBackoff), maxBackoff)
			s.log.Debug("read mdns socket", "iface", so.iface, "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.stop:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		s.handle(so, conn, buf[:n], src, unicast)
	}
}

// rescan opens sockets on new interfaces, closes those of vanished ones
// and replaces those whose index or address changed. It returns the new
// sockets, to announce on. Called by run only.
func (s *Server) rescan() []*socket {
	infos, err := s.listIfaces()
	if err != nil {
		s.log.Warn("list interfaces", "err", err)
		return nil
	}
	want, _ := selectInterfaces(infos, s.cfg.Interfaces, s.cfg.Addr)
	s.mu.Lock()
	var gone, out []*socket
	for name, so := range s.socks {
		// A socket's A record address is either Config.Addr or its local
		// address, so an address change always takes this path.
		i := slices.IndexFunc(want, func(w ifaceInfo) bool { return w.name == name })
		if i < 0 || want[i].index != so.index || want[i].addrs[0] != so.local {
			gone = append(gone, so)
			delete(s.socks, name)
			s.dropHeldLocked(so)
			continue
		}
		so.nets = want[i].nets // a secondary address may have come or gone

	}
	var open []ifaceInfo
	for _, w := range want {
		if s.socks[w.name] == nil {
			open = append(open, w)
		}
	}
	s.mu.Unlock()

	for _, so := range gone {
		so.close()
		s.log.Info("interface removed", "iface", so.iface)
	}
	for _, w := range open {
		so, err := s.open(w)
		if err != nil {
			if !s.failed[w.name] {
				s.log.Warn("interface skipped", "iface", w.name, "err", err)
			}
			s.failed[w.name] = true
			continue
		}
		delete(s.failed, w.name)
		s.mu.Lock()
		s.socks[w.name] = so
		zoneErrs := s.buildZonesLocked(so)
		s.start(so)
		s.mu.Unlock()
		s.logZoneErrors(zoneErrs)
		s.log.Info("interface added", "iface", w.name, "addr", w.addr)
		out = append(out, so)
	}
	return out
}

// open opens the socket for one interface.
func (s *Server) open(w ifaceInfo) (*socket, error) {
	conn, err := openSocket(w.index)
	if err != nil {
		return nil, fmt.Errorf("announce: open mdns socket on interface %q: %w", w.name, err)
	}
	so := &socket{iface: w.name, index: w.index, conn: conn, local: w.addrs[0], addr: w.addr, nets: w.nets,
		loopback: w.flags&net.FlagLoopback != 0}
	if so.ucast, err = openUnicastSocket(so.local); err != nil {
		// Multicast still works; only direct queries to port 5353 do not.
		s.log.Warn("no socket for direct unicast queries", "iface", w.name, "listen", netip.AddrPortFrom(so.local, mdnsPort), "err", err)
	}
	return so, nil
}
