package announce

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	// reportEvery is how often the same (node, address, port) is reported.
	reportEvery = 3 * time.Second
	// maxHosts bounds the A record cache.
	maxHosts = 1024
	// maxHostTTL caps how long a cached address is trusted, whatever TTL
	// its record claims.
	maxHostTTL = 2 * time.Minute
	// sweepEvery is how often parse drops stale cache entries; lookups
	// check expiry themselves, so this only bounds memory.
	sweepEvery = 10 * time.Second
)

// discovery turns mDNS responses into peers. Not safe for concurrent use;
// Server guards it with its mutex.
type discovery struct {
	node, cluster string

	// hosts holds the SRV targets of _ambassador._tcp instances, by
	// lower-case name, and their addresses once an A record gave one.
	// Only those targets are cached: the link's other A records are of
	// no use to us.
	hosts    map[string]hostAddr
	reported map[peerKey]time.Time // last report of each peer; at most maxHosts
	// ptrs are the _ambassador._tcp PTR records seen, by lower-case
	// instance name, for known-answer suppression. At most maxHosts.
	ptrs  map[string]knownPTR
	seen  bool      // a peer was seen since the last reset
	swept time.Time // last expire
}

// knownPTR is one cached PTR record of _ambassador._tcp.local.
type knownPTR struct {
	ptr     string // the instance name as received
	ttl     uint32 // the TTL it came with, seconds
	expires time.Time
}

type hostAddr struct {
	addr    netip.Addr // invalid until an A record arrives
	expires time.Time
}

type peerKey struct {
	node string
	addr netip.Addr
	port int
}

// instance collects the records of one _ambassador._tcp instance within a
// packet.
type instance struct {
	name string
	srv  *dns.SRV
	txt  *dns.TXT
	bye  bool // a record of it had TTL 0
}

func newDiscovery(node, cluster string) *discovery {
	return &discovery{
		node:     node,
		cluster:  cluster,
		hosts:    make(map[string]hostAddr),
		reported: make(map[peerKey]time.Time),
		ptrs:     make(map[string]knownPTR),
	}
}

// reset forgets what was reported and that a peer was seen.
func (d *discovery) reset() {
	d.forget()
	d.seen = false
}

// forget forgets what was reported, so every peer is reported again, and
// the PTR records seen, so the next query lists no known answers and every
// peer answers it.
func (d *discovery) forget() {
	clear(d.reported)
	clear(d.ptrs)
}

// ignoredResponse reports whether RFC 6762 says to ignore response m from
// src silently: it comes from a port other than 5353 (§6) or has a
// non-zero OPCODE (§18.3) or RCODE (§18.11).
func ignoredResponse(m *dns.Msg, src netip.AddrPort) bool {
	return !m.Response || m.Opcode != dns.OpcodeQuery || m.Rcode != dns.RcodeSuccess || src.Port() != mdnsPort
}

// parse reads a response received from src on iface and returns the peers
// to report: same cluster, not us, not reported within reportEvery. A
// records are remembered across packets; a peer whose SRV target has no
// known address is reported with the packet's source address. Responses
// RFC 6762 says to ignore (ignoredResponse) report nothing.
func (d *discovery) parse(m *dns.Msg, src netip.AddrPort, iface string, now time.Time) []Peer {
	if ignoredResponse(m, src) {
		return nil
	}
	if now.Sub(d.swept) >= sweepEvery {
		d.expire(now)
	}
	// SRV targets first, so that the A records of the same packet, in
	// whatever section or order, are kept.
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if srv, ok := rr.(*dns.SRV); ok && srv.Hdr.Class&^cacheFlush == dns.ClassINET &&
				srv.Hdr.Ttl > 0 && isPeerInstance(srv.Hdr.Name) {
				d.want(srv.Target, srv.Hdr.Ttl, now)
			}
		}
	}
	var insts []*instance
	get := func(name string) *instance {
		for _, in := range insts {
			if equalName(in.name, name) {
				return in
			}
		}
		in := &instance{name: name}
		insts = append(insts, in)
		return in
	}
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Class&^cacheFlush != dns.ClassINET {
				continue
			}
			switch rr := rr.(type) {
			case *dns.A:
				d.learn(h.Name, rr.A, h.Ttl, now)
			case *dns.PTR:
				if equalName(h.Name, peerFQDN) {
					in := get(rr.Ptr)
					in.bye = in.bye || h.Ttl == 0
					d.notePTR(rr.Ptr, h.Ttl, now)
				}
			case *dns.SRV:
				if isPeerInstance(h.Name) {
					in := get(h.Name)
					in.srv = rr
					in.bye = in.bye || h.Ttl == 0
				}
			case *dns.TXT:
				if isPeerInstance(h.Name) {
					in := get(h.Name)
					in.txt = rr
					in.bye = in.bye || h.Ttl == 0
				}
			}
		}
	}
	var peers []Peer
	for _, in := range insts {
		p, ok := d.peer(in, src, iface, now)
		if !ok {
			continue
		}
		d.seen = true
		k := peerKey{p.Node, p.Addr, p.GossipPort}
		last, ok := d.reported[k]
		if ok && now.Sub(last) < reportEvery {
			continue
		}
		if !ok && len(d.reported) >= maxHosts {
			// A flood of made-up peers (network input): sweep early,
			// at most once per reportEvery, and while still full
			// report no new peer, as the caches keep no new host.
			if now.Sub(d.swept) >= reportEvery {
				d.expire(now)
			}
			if len(d.reported) >= maxHosts {
				continue
			}
		}
		d.reported[k] = now
		peers = append(peers, p)
	}
	return peers
}

// peer makes a Peer of in, if it is complete, of our cluster and not us.
func (d *discovery) peer(in *instance, src netip.AddrPort, iface string, now time.Time) (Peer, bool) {
	if in.txt == nil || in.bye {
		return Peer{}, false
	}
	node, rest, ok := firstLabel(in.name)
	if !ok || node == "" || !equalName(rest, peerFQDN) || node == d.node {
		return Peer{}, false
	}
	cluster, port := txtValue(in.txt.Txt, "cluster"), txtValue(in.txt.Txt, "gossip")
	if cluster != d.cluster {
		return Peer{}, false
	}
	gossip, err := strconv.Atoi(port)
	if err != nil || gossip < 1 || gossip > 65535 {
		return Peer{}, false
	}
	var addr netip.Addr
	if in.srv != nil {
		if h, ok := d.hosts[strings.ToLower(in.srv.Target)]; ok && h.addr.IsValid() && now.Before(h.expires) {
			addr = h.addr
		}
	}
	if !addr.IsValid() {
		addr = src.Addr().Unmap()
	}
	if !addr.Is4() || addr.IsUnspecified() {
		return Peer{}, false
	}
	return Peer{Node: node, Cluster: cluster, Addr: addr, GossipPort: gossip, Iface: iface}, true
}

// maxKnownAnswers bounds the known answers in one query, so that it
// stays one unfragmented packet (about 40 bytes each). RFC 6762 §7.2
// would continue in more packets; with more peers than this, the rest
// simply answer.
const maxKnownAnswers = 30

// notePTR caches (or, with TTL 0, forgets) a PTR record of
// _ambassador._tcp.local pointing at instance.
func (d *discovery) notePTR(instance string, ttl uint32, now time.Time) {
	key := strings.ToLower(instance)
	if ttl == 0 {
		delete(d.ptrs, key)
		return
	}
	if _, ok := d.ptrs[key]; !ok && len(d.ptrs) >= maxHosts {
		return
	}
	d.ptrs[key] = knownPTR{ptr: instance, ttl: ttl, expires: now.Add(time.Duration(ttl) * time.Second)}
}

// known returns the cached PTR records whose remaining TTL is more than
// half the TTL they came with (RFC 6762 §7.1), at most maxKnownAnswers,
// with their remaining TTL.
func (d *discovery) known(now time.Time) []dns.RR {
	var out []dns.RR
	for _, p := range d.ptrs {
		left := p.expires.Sub(now)
		if left <= time.Duration(p.ttl)*time.Second/2 {
			continue
		}
		out = append(out, &dns.PTR{
			Hdr: dns.RR_Header{Name: peerFQDN, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: uint32(left / time.Second)},
			Ptr: p.ptr,
		})
		if len(out) == maxKnownAnswers {
			break
		}
	}
	return out
}

// capTTL turns a record TTL into an expiry time, at most maxHostTTL away.
func capTTL(ttl uint32, now time.Time) time.Time {
	return now.Add(min(time.Duration(ttl)*time.Second, maxHostTTL))
}

// want notes target, the SRV target of a peer instance, as a host whose
// A record to keep, for ttl seconds (capped).
func (d *discovery) want(target string, ttl uint32, now time.Time) {
	key := strings.ToLower(target)
	h, ok := d.hosts[key]
	if !ok && len(d.hosts) >= maxHosts {
		return
	}
	if exp := capTTL(ttl, now); exp.After(h.expires) {
		h.expires = exp
	}
	d.hosts[key] = h
}

// learn remembers (or, with TTL 0, forgets) the address of a host that is
// the SRV target of a peer instance; other hosts are ignored.
func (d *discovery) learn(name string, ip []byte, ttl uint32, now time.Time) {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	key := strings.ToLower(name)
	h, ok := d.hosts[key]
	if !ok || !now.Before(h.expires) {
		return
	}
	if ttl == 0 {
		h.addr = netip.Addr{}
	} else {
		h.addr = addr.Unmap()
		h.expires = capTTL(ttl, now)
	}
	d.hosts[key] = h
}

// expire drops stale cache entries. parse calls it every sweepEvery.
func (d *discovery) expire(now time.Time) {
	d.swept = now
	for k, h := range d.hosts {
		if !now.Before(h.expires) {
			delete(d.hosts, k)
		}
	}
	for k, p := range d.ptrs {
		if !now.Before(p.expires) {
			delete(d.ptrs, k)
		}
	}
	for k, t := range d.reported {
		if now.Sub(t) >= reportEvery {
			delete(d.reported, k)
		}
	}
}

// isPeerInstance reports whether name is <instance>._ambassador._tcp.local.
func isPeerInstance(name string) bool {
	_, rest, ok := firstLabel(name)
	return ok && equalName(rest, peerFQDN)
}

// txtValue returns the value of the first key=value string with key
// (case-insensitive, RFC 6763 §6.4), or "".
func txtValue(txt []string, key string) string {
	for _, s := range txt {
		k, v, _ := strings.Cut(s, "=")
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}
