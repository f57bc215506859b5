package upstream

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is the data a fakeDNS serves; tests change it while it runs.
type zone struct {
	mu      sync.Mutex
	answers []dns.RR       // guarded by mu; served by owner name and type
	extra   []dns.RR       // guarded by mu; additional section of SRV replies
	rcode   map[string]int // guarded by mu; forced rcode by lower-case qname
	queries map[string]int // guarded by mu; "udp SRV name." -> count
}

func newZone() *zone {
	return &zone{rcode: map[string]int{}, queries: map[string]int{}}
}

func mustRRs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad test record %q: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

// set replaces the zone's records and forced rcodes.
func (z *zone) set(answers, extra []dns.RR, rcode map[string]int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.answers, z.extra = answers, extra
	z.rcode = map[string]int{}
	for k, v := range rcode {
		z.rcode[strings.ToLower(k)] = v
	}
}

// count returns how many queries of qtype for name arrived over network
// ("udp", "tcp" or "" for both).
func (z *zone) count(network, qtype, name string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := 0
	for k, v := range z.queries {
		f := strings.Fields(k)
		if (network == "" || f[0] == network) && f[1] == qtype && f[2] == strings.ToLower(name) {
			n += v
		}
	}
	return n
}

func (z *zone) total() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := 0
	for _, v := range z.queries {
		n += v
	}
	return n
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	qname := strings.ToLower(q.Name)
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}

	z.mu.Lock()
	z.queries[network+" "+dns.TypeToString[q.Qtype]+" "+qname]++
	rcode, forced := z.rcode[qname]
	known := false
	for _, rr := range z.answers {
		if strings.EqualFold(rr.Header().Name, q.Name) {
			known = true
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
	}
	// Follow one CNAME hop, as a recursive resolver would.
	for _, a := range m.Answer {
		if c, ok := a.(*dns.CNAME); ok {
			for _, rr := range z.answers {
				if strings.EqualFold(rr.Header().Name, c.Target) && rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
		}
	}
	if q.Qtype == dns.TypeSRV {
		for _, rr := range z.extra {
			m.Extra = append(m.Extra, dns.Copy(rr))
		}
	}
	z.mu.Unlock()

	switch {
	case forced:
		m.Answer, m.Extra = nil, nil
		m.Rcode = rcode
	case !known:
		m.Rcode = dns.RcodeNameError
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// fakeDNS serves z over UDP and TCP on one 127.0.0.1 port and returns the
// address. Both servers stop in t.Cleanup.
func fakeDNS(t *testing.T, z *zone) string {
	t.Helper()
	var (
		ln  net.Listener
		pc  net.PacketConn
		err error
	)
	// The TCP port the kernel picks may be taken for UDP; try a few.
	for range 20 {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err = net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			break
		}
		ln.Close()
	}
	if err != nil {
		t.Fatalf("no port free for both UDP and TCP: %v", err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		done := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			defer close(done)
			_ = srv.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			_ = srv.Shutdown()
			<-done
		})
	}
	return ln.Addr().String()
}

// silentDNS returns the address of a UDP socket that never answers.
func silentDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// testConfig is a fast profile: 50ms..1h TTLs, 10..40ms retries.
func testConfig(t *testing.T, servers ...string) Config {
	c := DefaultConfig()
	c.Servers = servers
	c.MinTTL = 50 * time.Millisecond
	c.MaxTTL = time.Hour
	c.RetryMin = 10 * time.Millisecond
	c.RetryMax = 40 * time.Millisecond
	c.Timeout = 300 * time.Millisecond
	c.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return c
}

func newResolver(t *testing.T, cfg Config) *Resolver {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// addrs returns the sorted Addr set of ts.
func addrs(ts []Target) []string {
	out := make([]string, 0, len(ts))
	for _, t := range sortedTargets(ts) {
		out = append(out, t.Addr)
	}
	return out
}
