// From flags (or the --config file under them) to a mesh.Config.

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/ambassador-mesh/ambassador/creds"
	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/ambassador-mesh/ambassador/trust"
	"github.com/urfave/cli/v2"
)

// nodeConfig turns flags into a mesh config; every error is a usage error
// that names the flag and the bad value.
func nodeConfig(c source) (mesh.Config, error) {
	cfg := mesh.DefaultConfig()
	var err error
	if cfg.Announce, err = parseEach(c, "announce", startsAnnounce, mesh.ParseAnnounce); err != nil {
		return cfg, err
	}
	if cfg.Forward, err = parseEach(c, "forward", nil, mesh.ParseForward); err != nil {
		return cfg, err
	}
	for _, s := range splitList(c.StringSlice("balance"), nil) {
		name, policy, err := mesh.ParseBalance(s)
		if err != nil {
			return cfg, usagef("--balance %v", err)
		}
		if cfg.Balance == nil {
			cfg.Balance = map[svcname.Name]string{}
		}
		cfg.Balance[name] = policy
	}
	for _, s := range splitList(c.StringSlice("check"), startsNamed) {
		raw, spec, ok := strings.Cut(s, "=")
		if !ok {
			return cfg, usagef("--check %q: want NAME=CHECK", s)
		}
		name, err := svcname.Parse(raw)
		if err != nil {
			return cfg, usagef("--check %q: %v", s, err)
		}
		chk, err := health.ParseCheck(spec)
		if err != nil {
			return cfg, usagef("--check %q: %v", s, err)
		}
		if cfg.Checks == nil {
			cfg.Checks = map[svcname.Name]health.Check{}
		}
		cfg.Checks[name.Lower()] = chk
	}
	if cfg.Upstream, err = parseEach(c, "upstream", nil, mesh.ParseUpstream); err != nil {
		return cfg, err
	}
	if cfg.Credentials, err = parseEach(c, "credentials", startsNamed, creds.Parse); err != nil {
		return cfg, err
	}
	cfg.Resolvers = splitList(c.StringSlice("resolver"), nil)
	cfg.Keys = splitList(c.StringSlice("key"), nil)
	// Given empty, most likely an unset variable (--key-file "$F"): not
	// "no key", which would run the node with nothing encrypted.
	if c.IsSet("key-file") && c.String("key-file") == "" {
		return cfg, usagef("--key-file: empty path")
	}
	if path := c.String("key-file"); path != "" {
		if len(cfg.Keys) > 0 {
			return cfg, usagef("--key-file: use either --key or --key-file, not both")
		}
		keys, err := trust.ReadKeyFile(path)
		if err != nil {
			return cfg, usagef("--key-file %v", err)
		}
		if err := trust.CheckPrivate(path); err != nil {
			slog.Warn("key file is readable by others than its owner", "file", path, "err", err)
		}
		cfg.Keys = keys
	}
	cfg.TLSCA = c.String("tls-ca")
	cfg.TLSCert = c.String("tls-cert")
	cfg.TLSKey = c.String("tls-key")
	if cfg.TLSKey != "" {
		// A missing file is mesh.New's to report, naming it.
		if err := trust.CheckPrivate(cfg.TLSKey); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Warn("TLS key file is readable by others than its owner", "file", cfg.TLSKey, "err", err)
		}
	}
	cfg.CheckInterval = c.Duration("check-interval")
	cfg.CheckTimeout = c.Duration("check-timeout")
	cfg.Node = c.String("node")
	cfg.Cluster = c.String("cluster")
	cfg.Interfaces = splitList(c.StringSlice("iface"), nil)
	cfg.Bind = c.String("bind")
	cfg.GossipPort = c.Int("gossip-port")
	cfg.DataPort = c.Int("data-port")
	cfg.HTTP = c.String("http")
	cfg.Socket = c.String("socket")
	if !c.IsSet("socket") && mesh.SocketSupported() == nil { // none on Windows
		sock, err := mesh.DefaultSocket(os.Geteuid(), os.Getenv("XDG_RUNTIME_DIR"))
		if err != nil {
			return cfg, usagef("--socket: %v", err)
		}
		cfg.Socket = sock
	}
	cfg.Join = splitList(c.StringSlice("join"), nil)
	cfg.NoMDNS = c.Bool("no-mdns")
	cfg.Profile = c.String("profile")
	cfg.ProbeInterval = c.Duration("probe-interval")
	cfg.ProbeTimeout = c.Duration("probe-timeout")
	cfg.SuspicionMult = c.Int("suspicion-mult")
	cfg.DrainTimeout = c.Duration("drain-timeout")
	cfg.DialTimeout = c.Duration("dial-timeout")
	cfg.IdleTimeout = c.Duration("idle-timeout")
	cfg.HalfCloseTimeout = c.Duration("half-close-timeout")
	cfg.HostsFile = c.String("hosts")
	cfg.DNS = c.String("dns")
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("--%v", err)
	}
	return cfg, nil
}

// parseEach parses every item of the repeatable flag name (see splitList
// for starts) with parse; an error is a usage error naming the flag.
func parseEach[T any](c source, name string, starts func(string) bool, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, s := range splitList(c.StringSlice(name), starts) {
		v, err := parse(s)
		if err != nil {
			return nil, usagef("--%s %v", name, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// settings reads the node's settings again, for a reload: the command
// line, over the --config file when there is one. It checks every setting
// the node's start would check, the start-only log level and format
// included, so that a file that would not start the node is not applied.
func settings(c *cli.Context) (mesh.Config, error) {
	src, err := layered(c)
	if err != nil {
		return mesh.Config{}, err
	}
	if err := checkLogSettings(src); err != nil {
		return mesh.Config{}, err
	}
	cfg, err := nodeConfig(src)
	if err != nil {
		return cfg, err
	}
	// The node reads the credentials files again on a reload and refuses
	// the whole reload if one fails: read them here first, so that such a
	// reload fails as a whole, as a bad file does, and says so.
	for _, sp := range cfg.Credentials {
		if _, _, err := creds.Load(sp.Proto, sp.Path); err != nil {
			return cfg, fmt.Errorf("--credentials %s: %w", sp.Name, err)
		}
	}
	return cfg, nil
}

// layered is the command line, over the --config file when there is one.
func layered(c *cli.Context) (source, error) {
	path := c.String("config")
	if path == "" {
		if c.IsSet("config") {
			// An unset variable (--config "$F"), not "no file": the
			// node would run on defaults alone.
			return nil, usagef("%s: empty path", flagOrigin(c, "config"))
		}
		return c, nil
	}
	vals, err := loadConfigFile(path, nodeFlags())
	if err != nil {
		return nil, usageError{err}
	}
	return fileSource{Context: c, vals: vals}, nil
}

// splitList turns the values of a repeatable flag into items: each value
// may hold several, separated by commas (the form the environment variable
// takes, AMBASSADOR_ANNOUNCE=redis=6379,web=8080). A piece that does not
// start an item by starts (an announcement's ",weight=N", a comma inside a
// check's command) is joined back to the piece before it. A nil starts
// splits at every comma.
func splitList(vals []string, starts func(piece string) bool) []string {
	var out []string
	for _, v := range vals {
		for i, piece := range strings.Split(v, ",") {
			if i > 0 && starts != nil && !starts(piece) {
				out[len(out)-1] += "," + piece
				continue
			}
			out = append(out, piece)
		}
	}
	return out
}

// startsAnnounce: NAME[:PORT]=..., but not the weight=N option.
func startsAnnounce(piece string) bool {
	return startsNamed(piece) && !strings.HasPrefix(piece, "weight=")
}

// startsNamed: a piece that begins with a service name and "=" or ":"
// (NAME=..., NAME:PORT=...).
func startsNamed(piece string) bool {
	i := strings.IndexAny(piece, "=:")
	if i <= 0 {
		return false
	}
	for _, r := range piece[:i] {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
