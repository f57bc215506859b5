package announce

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestPeerAnswerThinned: in a cluster of more than peerAnswerers, or
// knowing that many peers on the link from their PTR records, a
// newcomer's unicast peer query is answered with probability
// peerAnswerers/n; alone or in a small cluster with few peers seen, and
// for legacy queries, service queries and multicast (QM) peer queries,
// always.
func TestPeerAnswerThinned(t *testing.T) {
	h := newHarness(t, Service{Name: "redis", Port: 6379})
	qu := peerQuery(true, nil)
	qm := peerQuery(false, nil)
	svc := query(0, "node-a.local.", dns.TypeA, dns.ClassINET|cacheFlush)
	legacy := netip.AddrPortFrom(onLinkSrc.Addr(), 40000)
	p := float64(peerAnswerers) / 100
	tests := []struct {
		name    string
		members int
		peers   int // PTR records of peers held
		chance  float64
		msg     *dns.Msg
		src     netip.AddrPort
		want    bool // answered
	}{
		{"alone", 1, 0, 0.99, qu, onLinkSrc, true},
		{"small cluster", peerAnswerers, 0, 0.99, qu, onLinkSrc, true},
		{"small cluster, few peers seen", 3, peerAnswerers, 0.99, qu, onLinkSrc, true},
		{"100 members, drawn in", 100, 0, p - 0.001, qu, onLinkSrc, true},
		{"100 members, drawn out", 100, 0, p, qu, onLinkSrc, false},
		{"alone, 100 peers seen, drawn in", 1, 100, p - 0.001, qu, onLinkSrc, true},
		{"alone, 100 peers seen, drawn out", 1, 100, p, qu, onLinkSrc, false},
		{"small cluster, 100 peers seen, drawn out", 3, 100, p, qu, onLinkSrc, false},
		{"100 members, QM peer query", 100, 0, 0.99, qm, onLinkSrc, true},
		{"100 members, legacy peer query", 100, 0, 0.99, qu, legacy, true},
		{"100 members, service query", 100, 0, 0.99, svc, onLinkSrc, true},
		{"100 peers seen, service query", 1, 100, 0.99, svc, onLinkSrc, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.s.SetMembers(tt.members)
			h.s.mu.Lock()
			clear(h.s.disc.ptrs)
			for i := range tt.peers {
				h.s.disc.notePTR(fmt.Sprintf("peer-%d.%s", i, peerFQDN), 120, t0)
			}
			h.s.mu.Unlock()
			h.s.chance = func() float64 { return tt.chance }
			b, err := tt.msg.Pack()
			if err != nil {
				t.Fatal(err)
			}
			h.s.mu.Lock()
			in, err := h.s.receiveLocked(h.so, b, tt.src, false, t0)
			h.s.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if got := in.reply != nil; got != tt.want {
				t.Errorf("answered %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRepeatLeavesPeerOutInCluster: a repeated announcement carries the
// node's peer records while it is alone or in a cluster of at most
// peerAnswerers, and only its service records in a larger cluster; a
// node that announces no service then sends no repeat at all. The first
// announcement always carries them.
func TestRepeatLeavesPeerOutInCluster(t *testing.T) {
	tests := []struct {
		name     string
		svcs     []Service
		members  int
		left     int  // announcements left in the job
		wantPeer bool // the peer PTR record is sent
		wantSvc  bool // the redis PTR record is sent
	}{
		{"first, big cluster", []Service{{Name: "redis", Port: 6379}}, 100, announceCount, true, true},
		{"repeat, alone", []Service{{Name: "redis", Port: 6379}}, 1, 1, true, true},
		{"repeat, small cluster", []Service{{Name: "redis", Port: 6379}}, peerAnswerers, 1, true, true},
		{"repeat, big cluster", []Service{{Name: "redis", Port: 6379}}, peerAnswerers + 1, 1, false, true},
		{"repeat, big cluster, no service", nil, 100, 1, false, false},
		{"repeat, alone, no service", nil, 1, 1, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.svcs...)
			h.s.SetMembers(tt.members)
			h.s.runJobs([]job{{sock: h.so, due: t0, left: tt.left}}, time.Now())
			if !tt.wantPeer && !tt.wantSvc {
				h.none("announcement")
				return
			}
			got := h.next("announcement")
			if has := hasRR(got.m, peerFQDN, dns.TypePTR, -1); has != tt.wantPeer {
				t.Errorf("peer PTR sent %v, want %v:\n%v", has, tt.wantPeer, got.m)
			}
			if has := hasRR(got.m, "_redis._tcp.local.", dns.TypePTR, -1); has != tt.wantSvc {
				t.Errorf("redis PTR sent %v, want %v:\n%v", has, tt.wantSvc, got.m)
			}
		})
	}
}
