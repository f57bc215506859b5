package announce

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/mdns"
	"github.com/miekg/dns"
)

const (
	mdnsPort   = 5353
	legacyTTL  = 10      // RFC 6762 §6.7: TTL cap in legacy unicast replies
	cacheFlush = 1 << 15 // top bit of the class: cache-flush (answers), QU (questions)
	maxPacket  = 9000    // RFC 6762 §17
	domain     = "local."
	peerType   = "_" + peerServiceName + "._tcp"
	peerFQDN   = peerType + "." + domain
	enumFQDN   = "_services._dns-sd._udp." + domain
)

// mdnsGroup is where multicast queries and responses go.
var mdnsGroup = netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 251}), mdnsPort)

// identity is what the records of a node are made of, apart from the
// address and the services. Fixed in New.
type identity struct {
	node       string // instance name, unescaped
	cluster    string
	host       string // SRV target, "<HostName>.local."
	gossipPort int
	ttl        uint32 // seconds
}

// zone is the set of records one node publishes on one interface. It is
// immutable once built.
type zone struct {
	ttl  uint32
	svcs []*mdns.MDNSService // [0] is the _ambassador._tcp record
	own  map[string]dns.RR   // every record by recordKey; see current, understated
}

// newZone builds the records for id with addr in the A record and the
// given services (valid, unique, not "ambassador").
func newZone(id identity, addr netip.Addr, svcs []Service) (*zone, error) {
	if !addr.Is4() {
		// NewMDNSService would look the host name up.
		return nil, fmt.Errorf("announce: records for %s: address %s is not IPv4", id.host, addr)
	}
	ips := []net.IP{net.IP(addr.AsSlice())}
	instance := escapeLabel(id.node)
	z := &zone{ttl: id.ttl, svcs: make([]*mdns.MDNSService, 0, 1+len(svcs))}
	peer, err := mdns.NewMDNSService(instance, peerType, domain, id.host, id.gossipPort, ips,
		[]string{"cluster=" + id.cluster, "gossip=" + strconv.Itoa(id.gossipPort)})
	if err != nil {
		return nil, fmt.Errorf("announce: records for %s: %w", peerType, err)
	}
	z.svcs = append(z.svcs, peer)
	for _, s := range svcs {
		m, err := mdns.NewMDNSService(instance, "_"+s.Name.String()+"._tcp", domain, id.host, s.Port, ips,
			[]string{"node=" + id.node})
		if err != nil {
			return nil, fmt.Errorf("announce: records for service %q: %w", s.Name, err)
		}
		z.svcs = append(z.svcs, m)
	}
	all := z.records(nil, true)
	z.own = make(map[string]dns.RR, len(all))
	for _, rr := range all {
		z.own[recordKey(rr)] = rr
	}
	return z, nil
}

// understated returns copies of the records of z that m, a response from
// another responder, carries with a TTL below half of z's, for the caller
// to multicast again (RFC 6762 §6.6: caches would otherwise drop them
// early). The case that matters is a goodbye from a namesake (a duplicate
// node name the mesh is stopping): its PTR, SRV and TXT records are
// identical to ours, and its TTL-0 copies would withdraw this node's
// services from every cache on the link. A record of the same name and
// type but other data (the namesake's A record) is a conflict, which
// this package does not resolve (see the package doc). A nil zone
// publishes nothing.
func (z *zone) understated(m *dns.Msg) []dns.RR {
	if z == nil {
		return nil
	}
	var out []dns.RR
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Ttl >= z.ttl/2 {
				continue
			}
			if own, ok := z.own[recordKey(rr)]; ok {
				out = append(out, dns.Copy(own))
			}
		}
	}
	return dedupe(out, nil)
}

// current returns the records of rrs that z still publishes, in place: an
// answer built from an older zone (one that waited out the shared-record
// delay) must not bring back a service withdrawn since, whose goodbye
// has gone out. A nil zone publishes nothing.
func (z *zone) current(rrs []dns.RR) []dns.RR {
	return slices.DeleteFunc(rrs, func(rr dns.RR) bool {
		if z == nil {
			return true
		}
		_, ok := z.own[recordKey(rr)]
		return !ok
	})
}

// names returns the owner names m answers for, built the way MDNSService
// builds them.
func names(m *mdns.MDNSService) (service, instance string) {
	service = strings.Trim(m.Service, ".") + "." + domain
	return service, m.Instance + "." + service
}

// answer returns the records that answer q, with the records named by q
// in ans and the related ones (SRV, TXT, A of a PTR's instance) in extra.
// Names match case-insensitively; the QU bit of the class is ignored.
func (z *zone) answer(q dns.Question) (ans, extra []dns.RR) {
	class := q.Qclass &^ cacheFlush
	if class != dns.ClassINET && class != dns.ClassANY {
		return nil, nil
	}
	for _, m := range z.svcs {
		service, instance := names(m)
		qtype := q.Qtype
		var canon string
		switch {
		case equalName(q.Name, enumFQDN):
			canon = enumFQDN
		case equalName(q.Name, service):
			canon = service
		case equalName(q.Name, instance):
			canon = instance
		case equalName(q.Name, m.HostName):
			canon = m.HostName
			if qtype == dns.TypeANY {
				qtype = dns.TypeA // MDNSService answers only A/AAAA for its host
			}
		default:
			continue
		}
		for _, rr := range m.Records(dns.Question{Name: canon, Qtype: qtype, Qclass: dns.ClassINET}) {
			h := rr.Header()
			h.Ttl = z.ttl
			if equalName(h.Name, canon) && (q.Qtype == dns.TypeANY || h.Rrtype == q.Qtype) {
				ans = append(ans, rr)
			} else {
				extra = append(extra, rr)
			}
		}
	}
	return ans, extra
}

// records returns every record of the services include accepts (all when
// include is nil): enumeration PTR, PTR, SRV, TXT, and the A records when
// host is set.
func (z *zone) records(include func(service string) bool, host bool) []dns.RR {
	var out []dns.RR
	for _, m := range z.svcs {
		service, _ := names(m)
		if include != nil && !include(service) {
			continue
		}
		rrs := m.Records(dns.Question{Name: enumFQDN, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
		rrs = append(rrs, m.Records(dns.Question{Name: service, Qtype: dns.TypePTR, Qclass: dns.ClassINET})...)
		for _, rr := range rrs {
			if !host && (rr.Header().Rrtype == dns.TypeA || rr.Header().Rrtype == dns.TypeAAAA) {
				continue
			}
			rr.Header().Ttl = z.ttl
			out = append(out, rr)
		}
	}
	return dedupe(out, nil)
}

// respond returns the reply to query received from src, and where to send
// it; nil when there is nothing to answer. unicast says the query was sent
// to our unicast address rather than the group. RFC 6762: a query from a
// port other than 5353 is a legacy unicast query (§6.7) and gets a unicast
// reply with its ID and question, TTLs capped at 10s and no cache-flush
// bit; a direct unicast query (§5.5) or one whose answered questions all
// have the QU bit (§5.4) gets a unicast reply; everything else a multicast
// reply with ID 0 and no question. Known answers in the query suppress
// ours (§7.1).
func respond(z *zone, query *dns.Msg, src netip.AddrPort, unicast bool) (*dns.Msg, netip.AddrPort) {
	if z == nil || query.Response || query.Opcode != dns.OpcodeQuery || query.Rcode != dns.RcodeSuccess {
		return nil, netip.AddrPort{}
	}
	legacy := src.Port() != mdnsPort
	qu := true
	var ans, extra []dns.RR
	// The query is network input: a 9 KB packet holds hundreds of
	// compressed questions and known answers. A repeated question adds
	// nothing to the reply, and each answer is compared only with the
	// known answers of its name and type, so a packet costs about what
	// its distinct questions do, not questions × answers × known
	// answers (TestRespondCostBounded).
	seen := make(map[dns.Question]bool, len(query.Question))
	knownAns := indexKnown(query.Answer)
	for _, q := range query.Question {
		key := dns.Question{Name: strings.ToLower(q.Name), Qtype: q.Qtype, Qclass: q.Qclass}
		if seen[key] {
			continue
		}
		seen[key] = true
		a, e := z.answer(q)
		a = slices.DeleteFunc(a, func(rr dns.RR) bool { return known(rr, knownAns[knownKeyOf(rr)]) })
		if len(a) == 0 {
			continue
		}
		if q.Qclass&cacheFlush == 0 {
			qu = false
		}
		ans = append(ans, a...)
		extra = append(extra, e...)
	}
	if len(ans) == 0 {
		return nil, netip.AddrPort{}
	}
	reply := &dns.Msg{Compress: true}
	reply.Response = true
	reply.Authoritative = true
	reply.Answer = dedupe(ans, nil)
	reply.Extra = dedupe(extra, reply.Answer)
	switch {
	case legacy:
		reply.Id = query.Id
		reply.Question = slices.Clone(query.Question)
		for _, rr := range reply.Answer {
			rr.Header().Ttl = min(rr.Header().Ttl, legacyTTL)
		}
		for _, rr := range reply.Extra {
			rr.Header().Ttl = min(rr.Header().Ttl, legacyTTL)
		}
		return reply, src
	case qu || unicast:
		setCacheFlush(reply)
		return reply, src
	default:
		setCacheFlush(reply)
		return reply, mdnsGroup
	}
}

// knownKey groups known answers by what dns.IsDuplicate compares first:
// the owner name (case-insensitively) and the type.
type knownKey struct {
	name  string // lower case
	rtype uint16
}

func knownKeyOf(rr dns.RR) knownKey {
	h := rr.Header()
	return knownKey{name: strings.ToLower(h.Name), rtype: h.Rrtype}
}

// indexKnown groups a query's known answers by knownKeyOf.
func indexKnown(answers []dns.RR) map[knownKey][]dns.RR {
	idx := make(map[knownKey][]dns.RR, len(answers))
	for _, rr := range answers {
		k := knownKeyOf(rr)
		idx[k] = append(idx[k], rr)
	}
	return idx
}

// known reports whether the querier already has rr with at least half
// our TTL (RFC 6762 §7.1); answers are the query's known answers of rr's
// name and type (indexKnown).
func known(rr dns.RR, answers []dns.RR) bool {
	for _, k := range answers {
		if dns.IsDuplicate(rr, k) && k.Header().Ttl >= rr.Header().Ttl/2 {
			return true
		}
	}
	return false
}

// announcement returns an unsolicited response (RFC 6762 §8.3) carrying
// records, with the cache-flush bit on the unique ones.
func announcement(records []dns.RR) *dns.Msg {
	m := &dns.Msg{Compress: true}
	m.Response = true
	m.Authoritative = true
	m.Answer = records
	setCacheFlush(m)
	return m
}

// goodbye returns a response that withdraws records (RFC 6762 §10.1): the
// same records with TTL 0, except the service enumeration PTRs
// (_services._dns-sd._udp.local. PTR _x._tcp.local.). Every node offering
// a service type publishes the very same enumeration record, so a goodbye
// for it would make caches drop it for all of them; only this node's own
// instance records are withdrawn.
func goodbye(records []dns.RR) *dns.Msg {
	own := slices.DeleteFunc(slices.Clone(records), func(rr dns.RR) bool {
		return equalName(rr.Header().Name, enumFQDN)
	})
	m := announcement(own)
	for _, rr := range m.Answer {
		rr.Header().Ttl = 0
	}
	return m
}

// setCacheFlush sets the cache-flush bit on the unique records (all but
// PTR) of a multicast response.
func setCacheFlush(m *dns.Msg) {
	for _, sec := range [][]dns.RR{m.Answer, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypePTR {
				h.Class |= cacheFlush
			}
		}
	}
}

// dedupe drops records that repeat one earlier in rrs or one in skip.
func dedupe(rrs, skip []dns.RR) []dns.RR {
	out := rrs[:0:0]
	for _, rr := range rrs {
		if slices.ContainsFunc(out, func(o dns.RR) bool { return dns.IsDuplicate(o, rr) }) ||
			slices.ContainsFunc(skip, func(o dns.RR) bool { return dns.IsDuplicate(o, rr) }) {
			continue
		}
		out = append(out, rr)
	}
	return out
}

// maxQuerySize bounds a query with known answers: one packet on any
// Ethernet, unfragmented.
const maxQuerySize = 1400

// maxResponseSize bounds each packet of an mDNS response: one packet on
// any Ethernet, unfragmented (RFC 6762 §17: up to the MTU less the IP and
// UDP headers, never more than 9000 bytes). A node with dozens of
// services has a record set several times that (about 100 bytes a
// service), which goes out in several packets (splitResponse).
const maxResponseSize = 1400

// splitResponse returns m, an mDNS response, as packets of at most limit
// bytes each: m itself when it fits, otherwise parts with m's header and
// consecutive runs of its records, in order. Every record of a response
// stands on its own (RFC 6762 §6, §17), so parts need not keep a PTR with
// its SRV. A part gets m's answers as answers and its additional records
// as additional ones, except that a part with no answer of m carries its
// first record as an answer: avahi-daemon drops a response without
// answers ("Invalid response packet"), and a responder may put any of
// its records in the answer section. A record larger than limit goes
// alone. m has no authority records. Legacy unicast replies, which carry
// the question, are not for splitting: a resolver reads only the first
// answer to its query.
func splitResponse(m *dns.Msg, limit int) []*dns.Msg {
	if m.Len() <= limit {
		return []*dns.Msg{m}
	}
	var out []*dns.Msg
	part := func() *dns.Msg { return &dns.Msg{MsgHdr: m.MsgHdr, Compress: m.Compress} }
	cur := part()
	add := func(rr dns.RR, extra bool) {
		if extra && len(cur.Answer) > 0 {
			cur.Extra = append(cur.Extra, rr)
		} else {
			cur.Answer = append(cur.Answer, rr)
		}
	}
	drop := func() {
		if len(cur.Extra) > 0 {
			cur.Extra = cur.Extra[:len(cur.Extra)-1]
		} else {
			cur.Answer = cur.Answer[:len(cur.Answer)-1]
		}
	}
	for i, rrs := range [][]dns.RR{m.Answer, m.Extra} {
		for _, rr := range rrs {
			add(rr, i == 1)
			if cur.Len() <= limit || len(cur.Answer)+len(cur.Extra) == 1 {
				continue
			}
			drop()
			out = append(out, cur)
			cur = part()
			add(rr, i == 1)
		}
	}
	return append(out, cur)
}

// peerQuery returns the query for _ambassador._tcp.local PTR (ID 0, RFC
// 6762 §18), asking for a unicast reply with qu (§5.4), with as many of
// known in the answer section as fit in maxQuerySize (known-answer
// suppression, §7.1). The multi-packet form of §7.2 is not used, so the TC
// bit stays clear (§18.5: it is set only when more known answers follow);
// peers left out simply answer.
func peerQuery(qu bool, known []dns.RR) *dns.Msg {
	m := &dns.Msg{Compress: true}
	class := uint16(dns.ClassINET)
	if qu {
		class |= cacheFlush // in a question the top bit is QU
	}
	m.Question = []dns.Question{{Name: peerFQDN, Qtype: dns.TypePTR, Qclass: class}}
	m.Answer = known
	for len(m.Answer) > 0 && m.Len() > maxQuerySize {
		m.Answer = m.Answer[:len(m.Answer)-1]
	}
	return m
}

// equalName compares two names in presentation format, ASCII
// case-insensitively (RFC 6762 §16), ignoring a missing final dot.
func equalName(a, b string) bool {
	a, b = strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// escapeLabel returns s as one label in miekg/dns presentation format,
// escaped the way miekg/dns escapes labels it unpacks.
func escapeLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(".'@;()\" \\", c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// firstLabel splits a presentation-format name into its first label,
// unescaped, and the rest.
func firstLabel(name string) (label, rest string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			return b.String(), name[i+1:], true
		case c == '\\' && i+3 < len(name) && isDigit(name[i+1]) && isDigit(name[i+2]) && isDigit(name[i+3]):
			n, _ := strconv.Atoi(name[i+1 : i+4])
			if n > 255 {
				return "", "", false
			}
			b.WriteByte(byte(n))
			i += 3
		case c == '\\' && i+1 < len(name):
			b.WriteByte(name[i+1])
			i++
		case c == '\\':
			return "", "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}
