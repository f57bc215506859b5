// The node's flags and the ones commands share. Flag names are a
// contract: the --config file's keys and AMBASSADOR_* variables follow them.

package main

import (
	"flag"
	"os"

	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/urfave/cli/v2"
)

func nodeFlags() []cli.Flag {
	d := mesh.DefaultConfig()
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "announce", EnvVars: []string{"AMBASSADOR_ANNOUNCE"},
			Usage: "this host runs a service; `SPEC` is NAME[:PORT]=[HOST:]TARGET_PORT[,weight=N]: clients reach it on PORT (default TARGET_PORT), HOST defaults to 127.0.0.1, weight is its share of connections (repeatable)"},
		&cli.StringSliceFlag{Name: "forward", EnvVars: []string{"AMBASSADOR_FORWARD"},
			Usage: "forward only these services; `SPEC` is NAME[=[HOST:]PORT] to listen on another local address (repeatable; default: every service on 127.0.0.1:PORT)"},
		&cli.StringSliceFlag{Name: "balance", EnvVars: []string{"AMBASSADOR_BALANCE"},
			Usage: "how to spread connections over a service's instances, `NAME=POLICY`: least-conn (default), round-robin, random, or first (active/passive, this host's own instance first) (repeatable)"},
		&cli.StringSliceFlag{Name: "check", EnvVars: []string{"AMBASSADOR_CHECK"},
			Usage: "health check of an announced service, `NAME=CHECK` with CHECK tcp (default: a connect), redis, http:/PATH, exec:CMD or none; a failing service is withdrawn from the cluster until it passes (repeatable)"},
		&cli.DurationFlag{Name: "check-interval", Value: d.CheckInterval, EnvVars: []string{"AMBASSADOR_CHECK_INTERVAL"},
			Usage: "`DURATION` between two health checks of one service"},
		&cli.DurationFlag{Name: "check-timeout", Value: d.CheckTimeout, EnvVars: []string{"AMBASSADOR_CHECK_TIMEOUT"},
			Usage: "`DURATION` one health check may take"},
		&cli.StringSliceFlag{Name: "upstream", EnvVars: []string{"AMBASSADOR_UPSTREAM"},
			Usage: "offer a service outside the mesh; `SPEC` is NAME[:PORT]=srv:_SVC._tcp.DOMAIN, NAME[:PORT]=dns:HOST:PORT or NAME[:PORT]=HOST:PORT, re-resolved at the record's TTL; srv needs NAME:PORT (repeatable)"},
		&cli.StringSliceFlag{Name: "resolver", EnvVars: []string{"AMBASSADOR_RESOLVER"},
			Usage: "DNS server `IP[:PORT]` for --upstream (repeatable; default: the nameservers in /etc/resolv.conf)"},
		&cli.StringSliceFlag{Name: "credentials", EnvVars: []string{"AMBASSADOR_CREDENTIALS"},
			Usage: "log in for the application: `NAME=PROTO:FILE` with PROTO redis (FILE: password or user:password), postgres (user:password), http-basic (user:password) or http-bearer (token); read at start and on SIGHUP (repeatable)"},
		&cli.StringSliceFlag{Name: "key", EnvVars: []string{"AMBASSADOR_KEY"},
			Usage: "cluster `KEY` (base64 of 16, 24 or 32 bytes, from ambassador keygen): encrypts gossip and makes connections between ambassadors mutually authenticated TLS 1.3; repeat to rotate (the first encrypts, all decrypt)"},
		&cli.StringFlag{Name: "key-file", EnvVars: []string{"AMBASSADOR_KEY_FILE"},
			Usage: "read cluster keys from `FILE`, one per line, first one primary (instead of --key, which shows in ps); SIGHUP re-reads it, to rotate keys without a restart"},
		&cli.StringFlag{Name: "tls-ca", EnvVars: []string{"AMBASSADOR_TLS_CA"},
			Usage: "PEM `FILE` of the operator's CA certificates: connections between ambassadors are TLS 1.3 trusting a peer whose certificate chains to them and names this cluster, instead of pinned fingerprints (needs --tls-cert, --tls-key and --key)"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"AMBASSADOR_TLS_CERT"},
			Usage: "PEM `FILE` of this node's certificate, signed by the --tls-ca CA (intermediates may follow), with a URI SAN ambassador://CLUSTER/NODE; read at start"},
		&cli.StringFlag{Name: "tls-key", EnvVars: []string{"AMBASSADOR_TLS_KEY"},
			Usage: "PEM `FILE` of the --tls-cert certificate's private key; read at start"},
		&cli.StringFlag{Name: "node", EnvVars: []string{"AMBASSADOR_NODE"},
			Usage: "node `NAME` in the cluster (default: host name plus 16 hex digits hashed from the address and gossip port; with --tls-ca the certificate's NODE)"},
		&cli.StringFlag{Name: "cluster", Value: d.Cluster, EnvVars: []string{"AMBASSADOR_CLUSTER"},
			Usage: "cluster `NAME`: nodes of different clusters on one LAN never merge"},
		&cli.StringSliceFlag{Name: "iface", EnvVars: []string{"AMBASSADOR_IFACE"},
			Usage: "network interface `NAME` for mDNS (repeatable; default every up, multicast-capable, non-loopback interface)"},
		&cli.StringFlag{Name: "bind", EnvVars: []string{"AMBASSADOR_BIND"},
			Usage: "`IP` address to advertise to peers and the only one the gossip and data ports listen on (default: advertise the first IPv4 address of the first interface, listen on every interface)"},
		&cli.IntFlag{Name: "gossip-port", Value: d.GossipPort, EnvVars: []string{"AMBASSADOR_GOSSIP_PORT"},
			Usage: "TCP and UDP `PORT` for membership gossip"},
		&cli.IntFlag{Name: "data-port", Value: d.DataPort, EnvVars: []string{"AMBASSADOR_DATA_PORT"},
			Usage: "TCP `PORT` where peers hand connections to this node's services"},
		&cli.StringFlag{Name: "http", Value: d.HTTP, EnvVars: []string{"AMBASSADOR_HTTP"},
			Usage: "`ADDR` of the local status API (empty: off)"},
		&cli.StringFlag{Name: "socket", EnvVars: []string{"AMBASSADOR_SOCKET"}, DefaultText: socketDefaultText,
			Usage: "`PATH` of the control socket, the only way to announce or drain at run time, for root and the node's own user (empty: none)"},
		&cli.StringSliceFlag{Name: "join", EnvVars: []string{"AMBASSADOR_JOIN"},
			Usage: "static seed `HOST[:PORT]` for networks that multicast does not reach (repeatable)"},
		&cli.BoolFlag{Name: "no-mdns", EnvVars: []string{"AMBASSADOR_NO_MDNS"},
			Usage: "no mDNS discovery or DNS-SD records (use --join)"},
		&cli.StringFlag{Name: "profile", Value: d.Profile, EnvVars: []string{"AMBASSADOR_PROFILE"},
			Usage: "gossip timers, `PROFILE`: lan (memberlist LAN timers: at 25 hosts a killed node is dropped in about 2.5s, a host that went down in about 7s), wan (slow links), local (one machine or a namespace lab)"},
		&cli.DurationFlag{Name: "probe-interval", EnvVars: []string{"AMBASSADOR_PROBE_INTERVAL"}, DefaultText: "the profile's, lan 1s",
			Usage: "failure detection: probe one peer every `DURATION`"},
		&cli.DurationFlag{Name: "probe-timeout", EnvVars: []string{"AMBASSADOR_PROBE_TIMEOUT"}, DefaultText: "the profile's, lan 500ms",
			Usage: "failure detection: a probe fails after `DURATION` without an answer"},
		&cli.IntFlag{Name: "suspicion-mult", EnvVars: []string{"AMBASSADOR_SUSPICION_MULT"}, DefaultText: "the profile's, lan 4",
			Usage: "failure detection: a suspect is declared dead after about `N` probe intervals"},
		&cli.DurationFlag{Name: "dial-timeout", Value: d.DialTimeout, EnvVars: []string{"AMBASSADOR_DIAL_TIMEOUT"},
			Usage: "an instance that does not accept a connection within `DURATION` counts as failed, and the next one is tried"},
		&cli.DurationFlag{Name: "drain-timeout", Value: d.DrainTimeout, EnvVars: []string{"AMBASSADOR_DRAIN_TIMEOUT"},
			Usage: "`DURATION` open connections may keep running once shutdown starts"},
		idleTimeoutFlag(),
		halfCloseTimeoutFlag(),
		&cli.StringFlag{Name: "config", EnvVars: []string{"AMBASSADOR_CONFIG"},
			Usage: "read settings from `FILE` of key = value lines (keys are these flag names); SIGHUP re-reads it and applies announce, forward, balance, check, credentials and key without a restart"},
		logLevelFlag(),
		// Operating it (issue 11): names, logs.
		&cli.StringFlag{Name: "hosts", EnvVars: []string{"AMBASSADOR_HOSTS"},
			Usage: "keep a marked block in hosts `FILE` (e.g. /etc/hosts) mapping every forwarded service name to its local listener's address; removed at exit (default: none)"},
		&cli.StringFlag{Name: "dns", EnvVars: []string{"AMBASSADOR_DNS"},
			Usage: "serve A and SRV records of the forwarded services (NAME.ambassador., _NAME._tcp.ambassador.) on UDP and TCP `IP:PORT`, e.g. 127.0.0.1:5354 (default: none)"},
		logFormatFlag(),
	}
}

func logLevelFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"AMBASSADOR_LOG_LEVEL"},
		Usage: "log `LEVEL`: debug, info, warn or error (logs go to stderr)"}
}

// socketDefaultText is where a node puts its control socket, and where a
// command looks for it, unless --socket says otherwise.
const socketDefaultText = "/run/ambassador/ambassador.sock as root, else $XDG_RUNTIME_DIR/ambassador/ambassador.sock; none on Windows"

// socketFlag picks the node a command talks to through its control socket.
func socketFlag() cli.Flag {
	return &cli.StringFlag{Name: "socket", EnvVars: []string{"AMBASSADOR_SOCKET"},
		DefaultText: "$XDG_RUNTIME_DIR/ambassador/ambassador.sock if it exists and not root, else /run/ambassador/ambassador.sock",
		Usage:       "`PATH` of the node's control socket"}
}

// readSocketFlag is --socket for the commands that only read: given
// empty, as for a node with no control socket, they read --http instead.
func readSocketFlag() cli.Flag {
	return &cli.StringFlag{Name: "socket", EnvVars: []string{"AMBASSADOR_SOCKET"},
		DefaultText: "$XDG_RUNTIME_DIR/ambassador/ambassador.sock if it exists and not root, else /run/ambassador/ambassador.sock",
		Usage:       "`PATH` of the node's control socket (empty, as for a node run without one: read --http, default " + mesh.DefaultConfig().HTTP + ")"}
}

// readHTTPFlag is --http for the commands that only read: given, they read
// the TCP status address instead of the control socket.
func readHTTPFlag() cli.Flag {
	return &cli.StringFlag{Name: "http", EnvVars: []string{"AMBASSADOR_HTTP"}, DefaultText: "the control socket",
		Usage: "read from the node's status address `ADDR` (e.g. 127.0.0.1:7948) instead of its control socket"}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", EnvVars: []string{"AMBASSADOR_JSON"}, Usage: "print JSON instead of a table"}
}

// idleTimeoutFlag and halfCloseTimeoutFlag are shared by the node and
// `ambassador forward`.
func idleTimeoutFlag() cli.Flag {
	return &cli.DurationFlag{Name: "idle-timeout", Value: mesh.DefaultConfig().IdleTimeout, EnvVars: []string{"AMBASSADOR_IDLE_TIMEOUT"}, DefaultText: "0, none",
		Usage: "reset a forwarded connection with no bytes either way for `DURATION`, on both hops (0 = never)"}
}

func halfCloseTimeoutFlag() cli.Flag {
	return &cli.DurationFlag{Name: "half-close-timeout", Value: mesh.DefaultConfig().HalfCloseTimeout, EnvVars: []string{"AMBASSADOR_HALF_CLOSE_TIMEOUT"},
		Usage: "reset a forwarded connection `DURATION` after one direction ended if the other stays silent, on both hops (0 = never)"}
}

// guardFlags applies two rules to every flag of app and its commands that
// takes one value (all but the slice flags):
//
//   - A second occurrence on the command line is bad usage: the flag
//     package would keep the last one without a word, so `--http a
//     --http b` ran with b. The repeatable flags (--announce, --forward,
//     --join, ...) stay repeatable, and a flag on the command line over
//     its AMBASSADOR_* variable is no repeat.
//   - A variable that does not parse (AMBASSADOR_GOSSIP_PORT=abc) is bad
//     usage for the command whose flag it is, when that command runs, and
//     for no other: urfave/cli reports it while it sets up the flags, and
//     the node's flags are the app's, so it stopped --help, version and
//     every command.
//
// urfave's own help and version flags, added later, are left as they are.
func guardFlags(app *cli.App) {
	app.Flags = onceEach(app.Flags)
	app.Action = withEnvChecked(app.Action)
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.Flags = onceEach(c.Flags)
			c.Action = withEnvChecked(c.Action)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
}

// withEnvChecked runs action unless a flag of its command holds a
// variable that did not parse.
func withEnvChecked(action cli.ActionFunc) cli.ActionFunc {
	if action == nil {
		return nil
	}
	return func(c *cli.Context) error {
		for _, f := range c.Command.Flags {
			if of, ok := f.(*onceFlag); ok && of.envErr != nil {
				return of.envErr
			}
		}
		return action(c)
	}
}

func onceEach(fs []cli.Flag) []cli.Flag {
	out := make([]cli.Flag, len(fs))
	for i, f := range fs {
		out[i] = f
		if sf, ok := f.(cli.DocGenerationSliceFlag); ok && sf.IsSliceFlag() {
			continue
		}
		if of, ok := f.(fullFlag); ok {
			out[i] = &onceFlag{fullFlag: of}
		}
	}
	return out
}

// fullFlag is every interface urfave/cli asks of a flag (help, categories,
// required, actions): onceFlag passes each through, so that help reads
// the same.
type fullFlag interface {
	cli.DocGenerationFlag
	cli.RequiredFlag
	cli.CategorizableFlag
	cli.ActionableFlag
}

// onceFlag is a flag whose value may be set once on the command line,
// and whose variable, if it does not parse, stops only its own command.
type onceFlag struct {
	fullFlag
	given    bool  // set on the command line in this parse
	parseErr error // a second occurrence or a bad value, for onUsageError
	envErr   error // the variable that did not parse, for withEnvChecked
}

// Apply registers the flag as usual, then wraps its value in the set so
// that a second Set fails. When the flag's variable does not parse, it
// registers the flag as if the variable were not there and keeps the
// error.
func (f *onceFlag) Apply(set *flag.FlagSet) error {
	f.given, f.parseErr, f.envErr = false, nil, nil
	if err := f.fullFlag.Apply(set); err != nil {
		bare := withoutEnv(f.fullFlag)
		if bare == nil {
			return err
		}
		if berr := bare.Apply(set); berr != nil {
			return err
		}
		f.envErr = usageError{err}
	}
	for _, name := range f.Names() {
		if fl := set.Lookup(name); fl != nil {
			fl.Value = &onceValue{Value: fl.Value, owner: f}
		}
	}
	return nil
}

// withoutEnv is a copy of f that reads no variable, for the kinds whose
// variable can fail to parse; nil for the others.
func withoutEnv(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case *cli.IntFlag:
		c := *f
		c.EnvVars = nil
		return &c
	case *cli.DurationFlag:
		c := *f
		c.EnvVars = nil
		return &c
	case *cli.BoolFlag:
		c := *f
		c.EnvVars = nil
		return &c
	}
	return nil
}

// onceValue is a flag.Value that takes one Set.
type onceValue struct {
	flag.Value
	owner *onceFlag
}

func (v *onceValue) Set(s string) error {
	// The flag package wraps these with %v, so onUsageError finds them
	// through the flag instead.
	o := v.owner
	name := o.Names()[0]
	if o.given {
		o.parseErr = usagef("--%s is given twice (%q, then %q): it takes one value; give it once", name, v.Value.String(), s)
		return o.parseErr
	}
	o.given = true
	if err := v.Value.Set(s); err != nil {
		// The flag package would say "parse error" and -name.
		switch o.fullFlag.(type) {
		case *cli.IntFlag:
			o.parseErr = usagef("--%s: %q is not a whole number", name, s)
		case *cli.DurationFlag:
			o.parseErr = usagef("--%s: %q is not a duration such as 30s or 1m30s", name, s)
		case *cli.BoolFlag:
			o.parseErr = usagef("--%s: %q is not true or false", name, s)
		default:
			o.parseErr = usagef("--%s: %q: %v", name, s, err)
		}
		return o.parseErr
	}
	return nil
}

// IsBoolFlag lets a bool flag go without a value (--no-mdns), as before.
func (v *onceValue) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (v *onceValue) Get() any {
	if g, ok := v.Value.(flag.Getter); ok {
		return g.Get()
	}
	return v.Value.String()
}

// flagParseError is the error of a flag of c's command that was given
// twice or with a bad value, if any.
func flagParseError(c *cli.Context) error {
	if c == nil || c.Command == nil {
		return nil
	}
	for _, f := range c.Command.Flags {
		if of, ok := f.(*onceFlag); ok && of.parseErr != nil {
			return of.parseErr
		}
	}
	return nil
}

// flagOrigin names where the value of c's flag name came from, the way a
// message should call it: "--name" when given on the command line, else
// the AMBASSADOR_* variable that set it.
func flagOrigin(c *cli.Context, name string) string {
	for _, cc := range c.Lineage() {
		if cc.Command == nil {
			continue
		}
		for _, f := range cc.Command.Flags {
			if f.Names()[0] != name {
				continue
			}
			if of, ok := f.(*onceFlag); ok && of.given {
				return "--" + name
			}
			if ef, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, v := range ef.GetEnvVars() {
					if _, set := os.LookupEnv(v); set {
						return v
					}
				}
			}
			return "--" + name
		}
	}
	return "--" + name
}
