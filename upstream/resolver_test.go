package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestResolve(t *testing.T) {
	const srvName = "_redis._tcp.example.lab."
	tests := []struct {
		name    string
		answers []string
		extra   []string
		rcode   map[string]int
		minTTL  time.Duration // 0: testConfig's 50ms
		maxTTL  time.Duration // 0: testConfig's 1h
		spec    Spec
		want    []Target // compared as a set; order checked by priority below
		wantTTL time.Duration
		// noQuery lists "TYPE name" pairs that must not be asked.
		noQuery []string
		// wantErrName, if set, is the name the *net.DNSError must carry.
		wantErrName string
		wantErr     bool
	}{
		{
			name: "srv priorities weights and additional A records",
			answers: []string{
				srvName + " 60 IN SRV 10 60 6379 a.example.lab.",
				srvName + " 60 IN SRV 10 20 6379 b.example.lab.",
				srvName + " 60 IN SRV 20 0 6380 c.example.lab.",
			},
			extra: []string{
				"a.example.lab. 30 IN A 10.0.0.1",
				"a.example.lab. 30 IN AAAA fd00::1",
				"b.example.lab. 300 IN A 10.0.0.2",
				"c.example.lab. 300 IN A 10.0.0.3",
			},
			spec: Spec{Kind: KindSRV, Name: srvName},
			want: []Target{
				{Addr: "10.0.0.1:6379", Priority: 10, Weight: 60},
				{Addr: "[fd00::1]:6379", Priority: 10, Weight: 60},
				{Addr: "10.0.0.2:6379", Priority: 10, Weight: 20},
				{Addr: "10.0.0.3:6380", Priority: 20, Weight: 0},
			},
			wantTTL: 30 * time.Second,
			noQuery: []string{"A a.example.lab.", "AAAA a.example.lab.", "A b.example.lab.", "A c.example.lab."},
		},
		{
			name: "srv without additionals queries A and AAAA",
			answers: []string{
				srvName + " 120 IN SRV 0 5 6379 a.example.lab.",
				srvName + " 120 IN SRV 0 5 6379 b.example.lab.",
				"a.example.lab. 90 IN A 10.0.0.1",
				"a.example.lab. 90 IN AAAA fd00::1",
				"b.example.lab. 100 IN CNAME real-b.example.lab.",
				"real-b.example.lab. 110 IN A 10.0.0.2",
			},
			spec: Spec{Kind: KindSRV, Name: srvName},
			want: []Target{
				{Addr: "10.0.0.1:6379", Weight: 5},
				{Addr: "[fd00::1]:6379", Weight: 5},
				{Addr: "10.0.0.2:6379", Weight: 5},
			},
			wantTTL: 90 * time.Second,
		},
		{
			name: "srv one unresolvable target is skipped",
			answers: []string{
				srvName + " 60 IN SRV 0 5 6379 a.example.lab.",
				srvName + " 60 IN SRV 0 5 6379 gone.example.lab.",
				"a.example.lab. 60 IN A 10.0.0.1",
			},
			spec: Spec{Kind: KindSRV, Name: srvName},
			want: []Target{{Addr: "10.0.0.1:6379", Weight: 5}},
			// Kept only for MinTTL, so the missing host is asked again soon.
			wantTTL: 50 * time.Millisecond,
		},
		{
			name: "srv record with port 0 is skipped",
			answers: []string{
				srvName + " 60 IN SRV 0 5 6379 a.example.lab.",
				srvName + " 60 IN SRV 0 5 0 b.example.lab.",
				"a.example.lab. 60 IN A 10.0.0.1",
				"b.example.lab. 60 IN A 10.0.0.2",
			},
			spec:    Spec{Kind: KindSRV, Name: srvName},
			want:    []Target{{Addr: "10.0.0.1:6379", Weight: 5}},
			wantTTL: 60 * time.Second,
		},
		{
			name:    "srv target dot means not available",
			answers: []string{srvName + " 40 IN SRV 0 0 0 ."},
			spec:    Spec{Kind: KindSRV, Name: srvName},
			want:    []Target{},
			wantTTL: 40 * time.Second,
		},
		{
			name:        "srv nxdomain",
			answers:     []string{"other.example.lab. 60 IN A 10.0.0.1"},
			spec:        Spec{Kind: KindSRV, Name: srvName},
			wantErrName: srvName,
		},
		{
			name:        "srv no records",
			answers:     []string{srvName + " 60 IN TXT \"hello\""},
			spec:        Spec{Kind: KindSRV, Name: srvName},
			wantErrName: srvName,
		},
		{
			name:    "srv servfail",
			answers: []string{srvName + " 60 IN SRV 0 5 6379 a.example.lab."},
			rcode:   map[string]int{srvName: dns.RcodeServerFailure},
			spec:    Spec{Kind: KindSRV, Name: srvName},
			wantErr: true,
		},
		{
			name:        "srv all targets unresolvable",
			answers:     []string{srvName + " 60 IN SRV 0 5 6379 gone.example.lab."},
			spec:        Spec{Kind: KindSRV, Name: srvName},
			wantErrName: "gone.example.lab.",
		},
		{
			name: "ttl clamped up to MinTTL",
			answers: []string{
				srvName + " 1 IN SRV 0 5 6379 a.example.lab.",
				"a.example.lab. 60 IN A 10.0.0.1",
			},
			minTTL:  5 * time.Second,
			maxTTL:  5 * time.Minute,
			spec:    Spec{Kind: KindSRV, Name: srvName},
			want:    []Target{{Addr: "10.0.0.1:6379", Weight: 5}},
			wantTTL: 5 * time.Second,
		},
		{
			name: "ttl clamped down to MaxTTL",
			answers: []string{
				srvName + " 86400 IN SRV 0 5 6379 a.example.lab.",
				"a.example.lab. 86400 IN A 10.0.0.1",
			},
			minTTL:  5 * time.Second,
			maxTTL:  5 * time.Minute,
			spec:    Spec{Kind: KindSRV, Name: srvName},
			want:    []Target{{Addr: "10.0.0.1:6379", Weight: 5}},
			wantTTL: 5 * time.Minute,
		},
		{
			name: "dns a and aaaa",
			answers: []string{
				"db.example.lab. 20 IN A 10.0.1.1",
				"db.example.lab. 20 IN A 10.0.1.2",
				"db.example.lab. 10 IN AAAA fd00::11",
			},
			spec: Spec{Kind: KindDNS, Name: "db.example.lab", Port: 5432},
			want: []Target{
				{Addr: "10.0.1.1:5432"}, {Addr: "10.0.1.2:5432"}, {Addr: "[fd00::11]:5432"},
			},
			wantTTL: 10 * time.Second,
		},
		{
			name:        "dns nxdomain",
			answers:     []string{"other.example.lab. 60 IN A 10.0.0.1"},
			spec:        Spec{Kind: KindDNS, Name: "db.example.lab", Port: 5432},
			wantErrName: "db.example.lab.",
		},
		// 0.0.0.0 and :: are no backend: a connection to them reaches this
		// host itself. DNS filters (Pi-hole, AdGuard) answer them for a
		// blocked name, so they are left out, and an answer with nothing
		// else is a not-found error: a watch keeps its last targets.
		{
			name: "dns unspecified addresses are left out",
			answers: []string{
				"db.example.lab. 20 IN A 0.0.0.0",
				"db.example.lab. 20 IN A 10.0.1.1",
				"db.example.lab. 20 IN AAAA ::",
			},
			spec:    Spec{Kind: KindDNS, Name: "db.example.lab", Port: 5432},
			want:    []Target{{Addr: "10.0.1.1:5432"}},
			wantTTL: 20 * time.Second,
		},
		{
			name: "dns only unspecified addresses is not found",
			answers: []string{
				"db.example.lab. 20 IN A 0.0.0.0",
				"db.example.lab. 20 IN AAAA ::",
			},
			spec:        Spec{Kind: KindDNS, Name: "db.example.lab", Port: 5432},
			wantErrName: "db.example.lab.",
		},
		{
			name: "srv unspecified addresses are left out",
			answers: []string{
				srvName + " 60 IN SRV 0 5 6379 a.example.lab.",
				srvName + " 60 IN SRV 0 5 6379 b.example.lab.",
			},
			extra: []string{
				"a.example.lab. 60 IN A 0.0.0.0",
				"b.example.lab. 60 IN A 10.0.0.2",
				"b.example.lab. 60 IN AAAA ::",
			},
			spec:    Spec{Kind: KindSRV, Name: srvName},
			want:    []Target{{Addr: "10.0.0.2:6379", Weight: 5}},
			wantTTL: 60 * time.Second,
		},
		{
			name:    "static unspecified ip",
			spec:    Spec{Kind: KindStatic, Name: "0.0.0.0", Port: 80},
			wantErr: true,
		},
		{
			name:    "static name",
			answers: []string{"cache.example.lab. 30 IN A 10.0.2.1"},
			spec:    Spec{Kind: KindStatic, Name: "cache.example.lab", Port: 11211},
			want:    []Target{{Addr: "10.0.2.1:11211"}},
			wantTTL: 30 * time.Second,
		},
		{
			name:    "static ip needs no query",
			spec:    Spec{Kind: KindStatic, Name: "fd00::9", Port: 80},
			want:    []Target{{Addr: "[fd00::9]:80"}},
			wantTTL: time.Hour,
		},
		{
			name:    "unknown kind",
			spec:    Spec{Kind: "carrier-pigeon", Name: "x", Port: 1},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			z := newZone()
			z.set(mustRRs(t, tc.answers...), mustRRs(t, tc.extra...), tc.rcode)
			cfg := testConfig(t, fakeDNS(t, z))
			if tc.minTTL != 0 {
				cfg.MinTTL, cfg.MaxTTL = tc.minTTL, tc.maxTTL
			}
			r := newResolver(t, cfg)

			got, ttl, err := r.Resolve(t.Context(), tc.spec)
			if tc.wantErr || tc.wantErrName != "" {
				if err == nil {
					t.Fatalf("got %v, want error", got)
				}
				if !strings.HasPrefix(err.Error(), "upstream: resolve "+tc.spec.String()) {
					t.Errorf("error %q does not start with the operation and spec", err)
				}
				if tc.wantErrName != "" {
					var de *net.DNSError
					if !errors.As(err, &de) || !de.IsNotFound {
						t.Fatalf("got %v, want a not-found *net.DNSError", err)
					}
					if de.Name != tc.wantErrName {
						t.Errorf("DNSError.Name: got %q, want %q", de.Name, tc.wantErrName)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if !slices.Equal(sortedTargets(got), sortedTargets(tc.want)) {
				t.Errorf("targets: got %v, want %v", got, tc.want)
			}
			if !slices.IsSortedFunc(got, func(a, b Target) int { return int(a.Priority) - int(b.Priority) }) {
				t.Errorf("targets not in priority order: %v", got)
			}
			if ttl != tc.wantTTL {
				t.Errorf("ttl: got %v, want %v", ttl, tc.wantTTL)
			}
			for _, q := range tc.noQuery {
				f := strings.Fields(q)
				if n := z.count("", f[0], f[1]); n != 0 {
					t.Errorf("%d queries for %s, want none (additional section ignored?)", n, q)
				}
			}
			if tc.spec.Kind == KindStatic && tc.answers == nil && z.total() != 0 {
				t.Errorf("static IP sent %d queries, want 0", z.total())
			}
		})
	}
}

// TestResolveTCPFallback serves an SRV set too big for UDP: the truncated
// UDP reply must be retried over TCP and yield every target.
func TestResolveTCPFallback(t *testing.T) {
	const srvName = "_big._tcp.example.lab."
	var answers, extra []string
	var want []Target
	for i := range 80 {
		host := fmt.Sprintf("host-with-a-long-name-%02d.example.lab.", i)
		answers = append(answers, fmt.Sprintf("%s 60 IN SRV 1 10 9000 %s", srvName, host))
		extra = append(extra, fmt.Sprintf("%s 60 IN A 10.1.0.%d", host, i+1))
		want = append(want, Target{Addr: fmt.Sprintf("10.1.0.%d:9000", i+1), Priority: 1, Weight: 10})
	}
	z := newZone()
	z.set(mustRRs(t, answers...), mustRRs(t, extra...), nil)
	r := newResolver(t, testConfig(t, fakeDNS(t, z)))

	got, _, err := r.Resolve(t.Context(), Spec{Kind: KindSRV, Name: srvName})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if !slices.Equal(sortedTargets(got), sortedTargets(want)) {
		t.Errorf("got %d targets, want %d: %v", len(got), len(want), got)
	}
	if n := z.count("udp", "SRV", srvName); n != 1 {
		t.Errorf("UDP SRV queries: got %d, want 1", n)
	}
	if n := z.count("tcp", "SRV", srvName); n != 1 {
		t.Errorf("TCP SRV queries: got %d, want 1 (no fallback on truncation?)", n)
	}
}

// TestResolveServerFallback checks servers are tried in order: a silent
// one (timeout), a SERVFAIL one, then a good one.
func TestResolveServerFallback(t *testing.T) {
	bad := newZone()
	bad.set(nil, nil, map[string]int{"db.example.lab.": dns.RcodeServerFailure})
	good := newZone()
	good.set(mustRRs(t, "db.example.lab. 60 IN A 10.0.3.1"), nil, nil)
	cfg := testConfig(t, silentDNS(t), fakeDNS(t, bad), fakeDNS(t, good))
	cfg.Timeout = 100 * time.Millisecond
	r := newResolver(t, cfg)

	got, _, err := r.Resolve(t.Context(), Spec{Kind: KindDNS, Name: "db.example.lab", Port: 80})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if want := []string{"10.0.3.1:80"}; !slices.Equal(addrs(got), want) {
		t.Errorf("got %v, want %v", addrs(got), want)
	}
	if n := bad.count("", "A", "db.example.lab."); n != 1 {
		t.Errorf("SERVFAIL server got %d A queries, want 1", n)
	}
}

// TestResolveAllServersFail checks the error names every server tried.
func TestResolveAllServersFail(t *testing.T) {
	dead := silentDNS(t)
	cfg := testConfig(t, dead)
	cfg.Timeout = 50 * time.Millisecond
	r := newResolver(t, cfg)

	_, _, err := r.Resolve(t.Context(), Spec{Kind: KindSRV, Name: "_x._tcp.lab."})
	if err == nil {
		t.Fatal("got nil error, want one")
	}
	if !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "_x._tcp.lab.") {
		t.Errorf("error %q does not name the server and the name", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("got %v, want a timeout net.Error", err)
	}
}

// TestResolveCancelled checks a cancelled ctx abandons a query at once,
// well before Timeout.
func TestResolveCancelled(t *testing.T) {
	cfg := testConfig(t, silentDNS(t))
	cfg.Timeout = time.Minute
	r := newResolver(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := r.Resolve(ctx, Spec{Kind: KindDNS, Name: "x.lab", Port: 1})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Resolve did not return after cancel")
	}
}

// TestResolveExchangeSeam checks a Config.Exchange replaces the network.
func TestResolveExchangeSeam(t *testing.T) {
	cfg := testConfig(t, "192.0.2.1:53")
	var asked []string
	cfg.Exchange = func(_ context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
		asked = append(asked, server+" "+dns.TypeToString[m.Question[0].Qtype])
		resp := new(dns.Msg)
		resp.SetReply(m)
		if m.Question[0].Qtype == dns.TypeA {
			resp.Answer = mustRRs(t, m.Question[0].Name+" 60 IN A 10.9.9.9")
		}
		return resp, nil
	}
	r := newResolver(t, cfg)
	got, _, err := r.Resolve(t.Context(), Spec{Kind: KindStatic, Name: "seam.lab", Port: 7})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if want := []string{"10.9.9.9:7"}; !slices.Equal(addrs(got), want) {
		t.Errorf("got %v, want %v", addrs(got), want)
	}
	if want := []string{"192.0.2.1:53 A", "192.0.2.1:53 AAAA"}; !slices.Equal(asked, want) {
		t.Errorf("queries: got %q, want %q", asked, want)
	}
}

// TestResolveNameErrorForAAAAOnly: some DNS servers answer NXDOMAIN to
// the AAAA query of a name that has A records (RFC 4074 §4.2). The
// addresses the A query found are the targets; the broken AAAA answer
// must not throw them away.
func TestResolveNameErrorForAAAAOnly(t *testing.T) {
	const srvName = "_db._tcp.example.lab."
	cfg := testConfig(t, "192.0.2.1:53")
	cfg.Exchange = func(_ context.Context, m *dns.Msg, _ string) (*dns.Msg, error) {
		q := m.Question[0]
		resp := new(dns.Msg)
		resp.SetReply(m)
		switch q.Qtype {
		case dns.TypeSRV:
			resp.Answer = mustRRs(t, q.Name+" 60 IN SRV 0 5 5432 db.example.lab.")
		case dns.TypeA:
			resp.Answer = mustRRs(t, q.Name+" 60 IN A 10.9.9.9")
		case dns.TypeAAAA:
			resp.Rcode = dns.RcodeNameError
		}
		return resp, nil
	}
	r := newResolver(t, cfg)
	for _, tc := range []struct {
		spec Spec
		want []string
	}{
		{Spec{Kind: KindDNS, Name: "db.example.lab", Port: 5432}, []string{"10.9.9.9:5432"}},
		{Spec{Kind: KindStatic, Name: "db.example.lab", Port: 5432}, []string{"10.9.9.9:5432"}},
		{Spec{Kind: KindSRV, Name: srvName}, []string{"10.9.9.9:5432"}},
	} {
		t.Run(tc.spec.String(), func(t *testing.T) {
			got, _, err := r.Resolve(t.Context(), tc.spec)
			if err != nil {
				t.Fatalf("Resolve: got error %v, want %v", err, tc.want)
			}
			if !slices.Equal(addrs(got), tc.want) {
				t.Errorf("got %v, want %v", addrs(got), tc.want)
			}
		})
	}
}

// TestResolveBounds: whatever a DNS server answers, one resolve makes a
// bounded number of queries and returns a bounded number of targets, and
// what it keeps are the targets a client would try first.
func TestResolveBounds(t *testing.T) {
	t.Run("srv hosts without addresses in the reply", func(t *testing.T) {
		const srvName = "_many._tcp.example.lab."
		var answers []string
		// The first half in answer order has the worse priority: the
		// bound must keep the better half, not the first in the reply.
		for i := range 2 * maxSRVLookups {
			prio := 20
			if i >= maxSRVLookups {
				prio = 10
			}
			host := fmt.Sprintf("h%03d.example.lab.", i)
			answers = append(answers,
				fmt.Sprintf("%s 60 IN SRV %d 10 9000 %s", srvName, prio, host),
				fmt.Sprintf("%s 60 IN A 10.2.%d.%d", host, i/250, i%250+1))
		}
		z := newZone()
		z.set(mustRRs(t, answers...), nil, nil)
		r := newResolver(t, testConfig(t, fakeDNS(t, z)))

		got, _, err := r.Resolve(t.Context(), Spec{Kind: KindSRV, Name: srvName})
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if len(got) != maxSRVLookups {
			t.Errorf("got %d targets, want %d (one per host looked up)", len(got), maxSRVLookups)
		}
		for _, tg := range got {
			if tg.Priority != 10 {
				t.Errorf("target %s has priority %d; the bound must keep priority 10 first", tg.Addr, tg.Priority)
			}
		}
		lookedUp := 0
		for i := range 2 * maxSRVLookups {
			if z.count("", "A", fmt.Sprintf("h%03d.example.lab.", i)) > 0 {
				lookedUp++
			}
		}
		if lookedUp != maxSRVLookups {
			t.Errorf("%d hosts looked up, want %d", lookedUp, maxSRVLookups)
		}
	})

	// 1,100 addresses: about 18 KB over TCP, past maxTargets.
	var many []string
	for i := range 1100 {
		many = append(many, fmt.Sprintf("big.example.lab. 60 IN A 10.3.%d.%d", i/250, i%250+1))
	}
	t.Run("srv glue past maxTargets", func(t *testing.T) {
		z := newZone()
		z.set(mustRRs(t, "_big._tcp.example.lab. 60 IN SRV 1 10 9000 big.example.lab."), mustRRs(t, many...), nil)
		r := newResolver(t, testConfig(t, fakeDNS(t, z)))
		got, _, err := r.Resolve(t.Context(), Spec{Kind: KindSRV, Name: "_big._tcp.example.lab."})
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if len(got) != maxTargets {
			t.Errorf("got %d targets, want %d", len(got), maxTargets)
		}
	})
	t.Run("dns name past maxTargets", func(t *testing.T) {
		z := newZone()
		z.set(mustRRs(t, many...), nil, nil)
		r := newResolver(t, testConfig(t, fakeDNS(t, z)))
		got, _, err := r.Resolve(t.Context(), Spec{Kind: KindDNS, Name: "big.example.lab", Port: 80})
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if len(got) != maxTargets {
			t.Errorf("got %d targets, want %d", len(got), maxTargets)
		}
	})
}
