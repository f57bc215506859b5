package forward

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ConnStatus is one open, proxied connection, returned by
// Proxy.Connections. BytesIn and BytesOut are what has been copied so far:
// they grow while the connection runs, after each write.
type ConnStatus struct {
	Service  string // the route's service
	Listen   string // the route's listener
	Backend  string // the address dialed: the service, or a peer's data port
	Client   string // the client's address, as the listener saw it
	Since    time.Time
	BytesIn  uint64 // client → backend so far
	BytesOut uint64 // backend → client so far
}

// ServerStats is a snapshot of a Server's counters, returned by
// Server.Stats. Each handoff counts in at most one of the Handoff* or
// TLSHandshakeFailed fields, named by the status the Server replied with
// (none when Shutdown interrupts it).
type ServerStats struct {
	Accepted uint64 // connections accepted on the data port
	Active   uint64 // connections open now (handoff or copy)

	HandoffOK          uint64 // status "ok": the local service was dialed and the copy ran
	HandoffUnknown     uint64 // status "unknown service": lookup does not know it (refused)
	HandoffUnavailable uint64 // status "backend unavailable": every local dial failed
	HandoffBadHeader   uint64 // status "bad header": malformed handoff header
	// HandoffIncomplete counts conns that ended or timed out before a full
	// header arrived: no status was sent.
	HandoffIncomplete uint64
	// TLSHandshakeFailed counts conns closed because the TLS handshake failed
	// (with ServerTLS only): no status was sent.
	TLSHandshakeFailed uint64

	// StreamErrors counts copies cut by a read or write error in the middle
	// of the stream (a reset, a TLS error): both ends were reset.
	StreamErrors      uint64
	IdleTimeouts      uint64 // copies ended by Config.IdleTimeout
	HalfCloseTimeouts uint64 // copies ended by Config.HalfCloseTimeout
	BytesIn           uint64 // peer → local service, after each write
	BytesOut          uint64 // local service → peer, after each write
	// ByService splits the stream counters above by the service named in
	// the handoff, for the connections that got "ok".
	ByService map[string]StreamStats
}

// StreamStats are the copy-phase counters of one service on a Server.
type StreamStats struct {
	StreamErrors      uint64
	IdleTimeouts      uint64
	HalfCloseTimeouts uint64
	BytesIn           uint64
	BytesOut          uint64
}

// streamStats are the counters one copy updates: a Proxy route's, or a
// Server's for one service. parent, when set, gets every update too (a
// Server's totals).
type streamStats struct {
	bytesIn, bytesOut atomic.Uint64
	streamErrors      atomic.Uint64
	idleTimeouts      atomic.Uint64
	halfCloseTimeouts atomic.Uint64
	parent            *streamStats
}

func (s *streamStats) addBytes(up bool, n uint64) {
	for ; s != nil; s = s.parent {
		if up {
			s.bytesIn.Add(n)
		} else {
			s.bytesOut.Add(n)
		}
	}
}

func (s *streamStats) count(reason endReason) {
	for ; s != nil; s = s.parent {
		switch reason {
		case endError:
			s.streamErrors.Add(1)
		case endIdle:
			s.idleTimeouts.Add(1)
		case endHalfClose:
			s.halfCloseTimeouts.Add(1)
		}
	}
}

func (s *streamStats) snapshot() StreamStats {
	return StreamStats{
		StreamErrors: s.streamErrors.Load(), IdleTimeouts: s.idleTimeouts.Load(), HalfCloseTimeouts: s.halfCloseTimeouts.Load(),
		BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
	}
}

// connTable is the set of open connections for Proxy.Connections.
type connTable struct {
	mu    sync.Mutex
	conns map[*connState]struct{} // guarded by mu
}

// connState is one open connection's identity and live byte counts.
type connState struct {
	service, listen, backend, client string // read-only
	since                            time.Time
	bytesIn, bytesOut                atomic.Uint64
}

func (t *connTable) add(cs *connState) {
	t.mu.Lock()
	if t.conns == nil {
		t.conns = make(map[*connState]struct{})
	}
	t.conns[cs] = struct{}{}
	t.mu.Unlock()
}

func (t *connTable) remove(cs *connState) {
	t.mu.Lock()
	delete(t.conns, cs)
	t.mu.Unlock()
}

// snapshot returns the open connections, oldest first.
func (t *connTable) snapshot() []ConnStatus {
	t.mu.Lock()
	css := slices.Collect(maps.Keys(t.conns))
	t.mu.Unlock()
	out := make([]ConnStatus, 0, len(css))
	for _, cs := range css {
		out = append(out, ConnStatus{
			Service: cs.service, Listen: cs.listen, Backend: cs.backend, Client: cs.client,
			Since: cs.since, BytesIn: cs.bytesIn.Load(), BytesOut: cs.bytesOut.Load(),
		})
	}
	slices.SortFunc(out, func(a, b ConnStatus) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return cmp.Compare(a.Client, b.Client)
	})
	return out
}
