package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ambassador-mesh/ambassador/forward"
)

// Static is one LISTEN=TARGET pair of `ambassador forward`.
type Static struct {
	Listen string // host:port
	Target string // host:port
}

// ParseStatic parses LISTEN=TARGET, each side HOST:PORT or PORT (host
// 127.0.0.1).
func ParseStatic(s string) (Static, error) {
	l, t, ok := strings.Cut(s, "=")
	if !ok {
		return Static{}, fmt.Errorf("%q: want LISTEN=TARGET", s)
	}
	listen, err := ParseAddr(l, "127.0.0.1")
	if err != nil {
		return Static{}, fmt.Errorf("%q: listen: %w", s, err)
	}
	target, err := ParseAddr(t, "127.0.0.1")
	if err != nil {
		return Static{}, fmt.Errorf("%q: target: %w", s, err)
	}
	if loopsBack(listen, target) {
		return Static{}, fmt.Errorf("%q: target %s is this forwarder's own listener: every connection would connect to itself", s, target)
	}
	return Static{Listen: listen, Target: target}, nil
}

// loopsBack reports whether a listener on listen accepts the connections
// it would dial to target: the same address (localhost being 127.0.0.1),
// or a wildcard address on one side and a loopback or wildcard one on the
// other. A pair that loops turns one client connection into a chain of
// them that ends only when the process runs out of file descriptors.
func loopsBack(listen, target string) bool {
	lh, lp, err1 := net.SplitHostPort(canonicalAddr(listen))
	th, tp, err2 := net.SplitHostPort(canonicalAddr(target))
	if err1 != nil || err2 != nil || lp != tp {
		return false
	}
	ip := func(h string) netip.Addr {
		a, _ := netip.ParseAddr(h)
		return a.Unmap()
	}
	l, t := ip(lh), ip(th)
	switch {
	case !l.IsValid() || !t.IsValid():
		return strings.EqualFold(lh, th) // host names: only the same name is known to loop
	case l == t:
		return true
	case l.IsUnspecified():
		// 0.0.0.0 takes IPv4 only; :: takes both.
		return (t.IsLoopback() || t.IsUnspecified()) && (l.Is6() || t.Is4())
	case t.IsUnspecified():
		// Dialling 0.0.0.0 (::) reaches this host's loopback.
		return l.IsLoopback() && l.Is4() == t.Is4()
	}
	return false
}

// RunStatic forwards each pair until ctx is cancelled, with no mesh at all:
// a quick fix, and the baseline for benchmarks. A listener that cannot be
// opened is an error here, unlike in the mesh, where it is retried.
func RunStatic(ctx context.Context, pairs []Static, drain time.Duration, log *slog.Logger) error {
	sc := DefaultStaticConfig()
	sc.DrainTimeout = drain
	return RunStaticConfig(ctx, pairs, sc, log)
}

// StaticConfig is what RunStaticConfig takes besides the pairs; the
// fields mean what Config's fields of the same names mean.
type StaticConfig struct {
	DrainTimeout     time.Duration
	IdleTimeout      time.Duration
	HalfCloseTimeout time.Duration
}

// DefaultStaticConfig returns Config's defaults for these fields.
func DefaultStaticConfig() StaticConfig {
	d := DefaultConfig()
	return StaticConfig{DrainTimeout: d.DrainTimeout, IdleTimeout: d.IdleTimeout, HalfCloseTimeout: d.HalfCloseTimeout}
}

// CheckStatics refuses pairs that give one listen address twice
// (localhost being 127.0.0.1): the proxy serves one route per listen
// address, so the second pair would be dropped without a word. Each pair
// on its own is ParseStatic's to check.
func CheckStatics(pairs []Static) error {
	seen := map[string]string{}
	for _, s := range pairs {
		l := canonicalAddr(s.Listen)
		if t, dup := seen[l]; dup {
			return fmt.Errorf("mesh: forward: %s is given twice (to %s and to %s)", s.Listen, t, s.Target)
		}
		seen[l] = s.Target
	}
	return nil
}

// RunStaticConfig is RunStatic with the connection timeouts.
func RunStaticConfig(ctx context.Context, pairs []Static, sc StaticConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if err := CheckStatics(pairs); err != nil {
		return err
	}
	drain := sc.DrainTimeout
	fc := forward.DefaultConfig()
	fc.DrainTimeout = drain
	fc.IdleTimeout = sc.IdleTimeout
	fc.HalfCloseTimeout = sc.HalfCloseTimeout
	fc.Logger = log
	p, err := forward.New(fc)
	if err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	var rs []forward.Route
	for _, s := range pairs {
		rs = append(rs, forward.Route{Service: s.Listen, Listen: s.Listen, Backends: []forward.Backend{{Node: "static", Addr: s.Target}}})
	}
	p.Update(rs)
	var errs []error
	for _, st := range p.Status() {
		if st.State != "listening" {
			errs = append(errs, fmt.Errorf("listen on %s: %s", st.Listen, st.Err))
		} else {
			log.Info("forwarding", "listen", st.Listen, "backend", st.Backends[0].Addr)
		}
	}
	if len(errs) == 0 {
		<-ctx.Done()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain+time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
