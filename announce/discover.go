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
)

// discovery turns mDNS responses into peers. Not safe for concurrent use;
// Server guards it with its mutex.
type discovery struct {
	node, cluster string

	hosts    map[string]hostAddr   // lower-case host name → address, from A records
	reported map[peerKey]time.Time // last report of each peer
	seen     bool                  // a peer was seen since the last reset
}

type hostAddr struct {
	addr    netip.Addr
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
	}
}

// reset forgets what was reported and that a peer was seen.
func (d *discovery) reset() {
	d.forget()
	d.seen = false
}

// forget forgets what was reported, so every peer is reported again.
func (d *discovery) forget() {
	clear(d.reported)
}

// parse reads a response received from src on iface and returns the peers
// to report: same cluster, not us, not reported within reportEvery. A
// records are remembered across packets; a peer whose SRV target has no
// known address is reported with the packet's source address.
func (d *discovery) parse(m *dns.Msg, src netip.AddrPort, iface string, now time.Time) []Peer {
	if !m.Response || m.Opcode != dns.OpcodeQuery {
		return nil
	}
	d.expire(now)
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
		if last, ok := d.reported[k]; ok && now.Sub(last) < reportEvery {
			continue
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
		if h, ok := d.hosts[strings.ToLower(in.srv.Target)]; ok && now.Before(h.expires) {
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

// learn remembers (or, with TTL 0, forgets) the address of a host.
func (d *discovery) learn(name string, ip []byte, ttl uint32, now time.Time) {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	addr = addr.Unmap()
	key := strings.ToLower(name)
	if ttl == 0 {
		delete(d.hosts, key)
		return
	}
	if _, ok := d.hosts[key]; !ok && len(d.hosts) >= maxHosts {
		return
	}
	d.hosts[key] = hostAddr{addr: addr, expires: now.Add(time.Duration(ttl) * time.Second)}
}

// expire drops stale cache entries.
func (d *discovery) expire(now time.Time) {
	for k, h := range d.hosts {
		if !now.Before(h.expires) {
			delete(d.hosts, k)
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
