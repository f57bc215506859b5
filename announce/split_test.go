package announce

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/miekg/dns"
)

// ethernetPayload is the most a UDP datagram carries on a 1500-byte
// Ethernet link without IP fragmentation: RFC 6762 §17 lets mDNS messages
// be "up to the IP MTU ... less the space required for the IP header (20
// bytes for IPv4) and the UDP header (8 bytes)", and never more than
// 9000 bytes.
const ethernetPayload = 1500 - 20 - 8

// manyServices returns n valid services, svc0..svcN-1.
func manyServices(n int) []Service {
	out := make([]Service, n)
	for i := range out {
		out[i] = Service{Name: svcname.Name(fmt.Sprintf("svc%d", i)), Port: 1000 + i}
	}
	return out
}

// TestLargeRecordSetSplit: a node hosting many services (gossip allows 256)
// sends its record set in as many packets as it takes, each fitting one
// Ethernet frame, and none of its records is lost: one packet of 25 KB
// would be fragmented, and beyond 9000 bytes every mDNS stack (ours reads
// 9000) drops it whole, so the announcement and the goodbye vanish.
func TestLargeRecordSetSplit(t *testing.T) {
	const n = 100
	all := testZone(t, identity{node: "Node A", cluster: "lab", host: "node-a.local.", gossipPort: 7946, ttl: 120},
		manyServices(n)...).records(nil, true)
	enumQuery := query(0, enumFQDN, dns.TypePTR, dns.ClassINET)
	quQuery := query(0, enumFQDN, dns.TypePTR, dns.ClassINET|cacheFlush)
	// One PTR question per service: 100 answers, 300 additional records.
	everyService := new(dns.Msg)
	for _, sv := range manyServices(n) {
		everyService.Question = append(everyService.Question, dns.Question{Name: serviceFQDN(sv.Name), Qtype: dns.TypePTR, Qclass: dns.ClassINET | cacheFlush})
	}

	tests := []struct {
		name string
		send func(h *harness)
		dst  netip.AddrPort
		want int // records in all packets together
	}{
		{"announcement", func(h *harness) {
			h.s.sendRecords(h.so, h.so.zone.records(nil, true), sendAnnounce)
		}, mdnsGroup, len(all)},
		{"goodbye on close", func(h *harness) {
			h.started()
			h.s.Close()
		}, mdnsGroup, len(all) - (n + 1)}, // no enumeration PTRs
		{"multicast answer", func(h *harness) {
			h.receive(enumQuery, onLinkSrc, false)
		}, mdnsGroup, n + 1},
		{"unicast (QU) answer", func(h *harness) {
			h.receive(quQuery, onLinkSrc, false)
		}, onLinkSrc, n + 1},
		{"answer with additional records", func(h *harness) {
			h.receive(everyService, onLinkSrc, false)
		}, onLinkSrc, 3*n + 1}, // PTR, SRV, TXT of each, one A
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, manyServices(n)...)
			tt.send(h)
			seen := map[string]bool{}
			for len(seen) < tt.want {
				got := h.next(fmt.Sprintf("packet with records %d.. of %d", len(seen), tt.want))
				if len(got.b) > ethernetPayload {
					t.Errorf("packet of %d bytes, want at most %d", len(got.b), ethernetPayload)
				}
				if got.dst != tt.dst {
					t.Errorf("packet to %v, want %v", got.dst, tt.dst)
				}
				if !got.m.Response || got.m.Id != 0 || len(got.m.Question) != 0 || got.m.Truncated {
					t.Errorf("header: QR %v ID %d questions %d TC %v", got.m.Response, got.m.Id, len(got.m.Question), got.m.Truncated)
				}
				// avahi-daemon drops a response without answers ("Invalid
				// response packet"), whatever its other sections hold.
				if len(got.m.Answer) == 0 {
					t.Errorf("packet without answers (%d additional records)", len(got.m.Extra))
				}
				for _, rr := range append(got.m.Answer, got.m.Extra...) {
					k := recordKey(rr)
					if seen[k] {
						t.Errorf("record sent twice: %v", rr)
					}
					seen[k] = true
				}
			}
			h.none("more packets")
		})
	}
}
