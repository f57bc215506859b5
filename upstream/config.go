package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// Config configures a Resolver. Start from DefaultConfig and override
// fields; New copies it, so later changes have no effect.
//
// Zero values: every field falls back to its default when zero (nil for
// Servers, Logger and Exchange). Negative durations are rejected by New.
type Config struct {
	// Servers are the DNS servers to ask, as "ip:port" or a bare IP (port
	// 53), tried in order for every query. Default (nil or empty): the
	// nameservers in /etc/resolv.conf, read by New, which fails if there
	// are none.
	Servers []string

	// MinTTL is the lower bound on how long a resolution is cached before
	// a Watch re-resolves, whatever the records' TTL says, and the minimum
	// gap between a Refresh and the previous resolution. Default 5s.
	MinTTL time.Duration

	// MaxTTL is the upper bound on the cache time, so a long record TTL
	// still gets re-checked; it is also the cache time of a static IP.
	// Default 5m; must be >= MinTTL.
	MaxTTL time.Duration

	// RetryMin is the first back-off after a failed resolution; it doubles
	// on each further failure up to RetryMax. Default 1s.
	RetryMin time.Duration

	// RetryMax caps the back-off. Default 30s; must be >= RetryMin.
	RetryMax time.Duration

	// Timeout bounds one query to one server (UDP plus any TCP retry).
	// Default 2s.
	Timeout time.Duration

	// Logger receives the resolver's logs with component=upstream.
	// Default (nil): slog.Default().
	Logger *slog.Logger

	// Exchange sends one query to one server and returns the reply. It is
	// the test seam; it must be safe for concurrent use and honour ctx.
	// Default (nil): a dns.Client over UDP that retries over TCP when the
	// reply is truncated.
	Exchange func(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error)
}

const resolvConf = "/etc/resolv.conf"

// DefaultConfig returns the defaults: servers from /etc/resolv.conf (read
// in New), TTL bounds 5s..5m, retry back-off 1s..30s, 2s per query. It does
// no I/O and cannot fail; each call returns a fresh value.
func DefaultConfig() Config {
	return Config{
		MinTTL:   5 * time.Second,  // don't hammer DNS when records say TTL 0
		MaxTTL:   5 * time.Minute,  // notice changes even behind a day-long TTL
		RetryMin: 1 * time.Second,  // a lost UDP packet is retried quickly
		RetryMax: 30 * time.Second, // an outage costs at most one query per 30s
		Timeout:  2 * time.Second,  // a LAN resolver answers in milliseconds
	}
}

// withDefaults fills zero fields from DefaultConfig and validates the
// result. It does no I/O; Servers is resolved separately.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"MinTTL", &c.MinTTL, d.MinTTL},
		{"MaxTTL", &c.MaxTTL, d.MaxTTL},
		{"RetryMin", &c.RetryMin, d.RetryMin},
		{"RetryMax", &c.RetryMax, d.RetryMax},
		{"Timeout", &c.Timeout, d.Timeout},
	}
	for _, f := range durs {
		if *f.v < 0 {
			return c, fmt.Errorf("upstream: config: %s %v is negative", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.MaxTTL < c.MinTTL {
		return c, fmt.Errorf("upstream: config: MaxTTL %v is below MinTTL %v", c.MaxTTL, c.MinTTL)
	}
	if c.RetryMax < c.RetryMin {
		return c, fmt.Errorf("upstream: config: RetryMax %v is below RetryMin %v", c.RetryMax, c.RetryMin)
	}
	servers := make([]string, 0, len(c.Servers))
	for _, s := range c.Servers {
		addr, err := serverAddr(s)
		if err != nil {
			return c, fmt.Errorf("upstream: config: Servers: %w", err)
		}
		servers = append(servers, addr)
	}
	c.Servers = servers
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// serverAddr normalises "ip", "ip:port" or "[v6]:port" to "ip:port".
func serverAddr(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("server %q is not an IP or ip:port", s)
	}
	return ap.String(), nil
}

// serversFromResolvConf returns the nameservers listed in path as ip:port.
func serversFromResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("upstream: config: read DNS servers: %w", err)
	}
	var out []string
	for _, s := range cc.Servers {
		addr, err := serverAddr(net.JoinHostPort(s, cc.Port))
		if err != nil {
			continue // e.g. a scoped link-local entry we can't use
		}
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("upstream: config: no nameservers in %s; set Servers", path)
	}
	return out, nil
}
