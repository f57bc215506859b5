// Go re-reads the CPU count and cgroup limit every second to adjust
// GOMAXPROCS: a wake-up an idle node does not need (issue 10); a change of
// CPUs takes a restart.
//
//go:debug updatemaxprocs=0

// Command ambassador lets an application connect to localhost:PORT and reach
// whichever host of the LAN currently runs the service: nodes find each other
// over mDNS, gossip the service catalog with memberlist, and forward named
// ports to the node that hosts each service.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ambassador-mesh/ambassador/creds"
	"github.com/ambassador-mesh/ambassador/health"
	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/ambassador-mesh/ambassador/trust"
	"github.com/urfave/cli/v2"
)

// Exit codes, as the flag package uses them.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure: a port in use, an interface that does not exist
	exitUsage   = 2 // bad flag, bad argument, or a config that fails validation
)

// version is set with -ldflags "-X main.version=..."; otherwise the module
// build info is used.
var version = ""

// The collector's pace: steadyGOGC normally, startGOGC for a node's first
// startGCWindow (see main and startGC).
const (
	steadyGOGC    = 50
	startGOGC     = 200
	startGCWindow = 30 * time.Second
)

// tuneGC is set by main when GOGC is not in the environment; the node's
// start window (startGC) applies only then.
var tuneGC bool

// hupKey carries the SIGHUP channel from run to runNode.
type hupKey struct{}

// usageError marks an error as bad usage (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func main() {
	if os.Getenv("GOGC") == "" {
		// A node's live heap is about 1-2 MiB: GOGC=100's heap goal kept
		// ~2 MiB more resident than GOGC=50, which costs a few more,
		// still rare, collections (issue 10). GOGC in the environment wins.
		debug.SetGCPercent(steadyGOGC)
		tuneGC = true
	}
	governProcs = os.Getenv("GOMAXPROCS") == "" // see startProcsGovernor
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// SIGHUP's default action ends the process: catch it from the start,
	// so a reload sent while the node starts up is not fatal. runNode
	// reads this channel once the node exists.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.WithValue(context.Background(), hupKey{}, hup), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		// The first signal cancels ctx and starts a graceful leave; a
		// second one exits at once.
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(c)
		select {
		case <-c:
			fmt.Fprintln(stderr, "ambassador: second signal, exiting now")
			os.Exit(exitFailure)
		case <-done:
		}
	}()
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "ambassador: %v\n", err)
	var ue usageError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ec):
		return ec.ExitCode()
	default:
		return exitFailure
	}
}

func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }

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

// readHTTPFlag is --http for the commands that only read: given, they read
// the TCP status address instead of the control socket.
func readHTTPFlag() cli.Flag {
	return &cli.StringFlag{Name: "http", EnvVars: []string{"AMBASSADOR_HTTP"}, DefaultText: "the control socket",
		Usage: "read from the node's status address `ADDR` (e.g. 127.0.0.1:7948) instead of its control socket"}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", EnvVars: []string{"AMBASSADOR_JSON"}, Usage: "print JSON instead of a table"}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	runCmd := &cli.Command{
		Name:  "run",
		Usage: "run a node (the same as ambassador with no command)",
		UsageText: "ambassador run [flags]\n\n" +
			"Example: ambassador run --announce redis:6379=12345",
		Flags:        nodeFlags(),
		Action:       runNode,
		OnUsageError: onUsageError,
	}
	return &cli.App{
		Name:  "ambassador",
		Usage: "reach services on any host of a LAN through localhost, with no configuration and no master",
		UsageText: "ambassador [flags]            run a node\n" +
			"ambassador COMMAND [flags]\n\n" +
			"On the host that runs Redis on 127.0.0.1:12345:  ambassador --announce redis:6379=12345\n" +
			"On every other host:                             ambassador\n" +
			"Then on any host: redis-cli -p 6379",
		Version:        buildVersion(),
		Writer:         stdout,
		ErrWriter:      stderr,
		Flags:          nodeFlags(),
		Action:         runNode,
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {}, // run decides the exit code, once
		// urfave would split every value on commas, which cuts
		// "api=8080,weight=3" in two; splitList splits with the syntax in
		// mind instead.
		DisableSliceFlagSeparator: true,
		HideHelpCommand:           false,
		Commands: []*cli.Command{
			runCmd,
			{
				Name:         "members",
				Usage:        "list the nodes this node knows",
				UsageText:    "ambassador members [--json] [--socket PATH | --http ADDR]",
				Flags:        []cli.Flag{socketFlag(), readHTTPFlag(), jsonFlag()},
				Action:       membersCmd,
				OnUsageError: onUsageError,
			},
			{
				Name:         "services",
				Usage:        "list the services in the catalog and this node's listeners",
				UsageText:    "ambassador services [--json] [--socket PATH | --http ADDR]",
				Flags:        []cli.Flag{socketFlag(), readHTTPFlag(), jsonFlag()},
				Action:       servicesCmd,
				OnUsageError: onUsageError,
			},
			watchCommand(), connectionsCommand(), // cmd_observe.go
			{
				Name:  "forward",
				Usage: "forward static ports with no mesh at all",
				UsageText: "ambassador forward LISTEN=TARGET [LISTEN=TARGET...]\n\n" +
					"Addresses are HOST:PORT or PORT (host 127.0.0.1). Example: ambassador forward 6380=10.0.0.5:6379",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "drain-timeout", Value: mesh.DefaultConfig().DrainTimeout, EnvVars: []string{"AMBASSADOR_DRAIN_TIMEOUT"},
						Usage: "how long open connections may keep running once shutdown starts"},
					idleTimeoutFlag(),
					halfCloseTimeoutFlag(),
					logLevelFlag(),
					logFormatFlag(),
				},
				Action:       forwardCmd,
				OnUsageError: onUsageError,
			},
			{
				Name:  "announce",
				Usage: "announce a service on the running node, without a restart",
				UsageText: "ambassador announce [--socket PATH] NAME[:PORT]=[HOST:]TARGET_PORT [...]\n\n" +
					"Example: ambassador announce redis:6379=12345\n" +
					"Only root and the user the node runs as may announce (the node checks the caller's uid on its control socket).",
				Flags:        []cli.Flag{socketFlag()},
				Action:       announceCmd,
				OnUsageError: onUsageError,
			},
			{
				Name:  "drain",
				Usage: "withdraw an announced service from the cluster without stopping the node",
				UsageText: "ambassador drain [--socket PATH] NAME [...]\n\n" +
					"Peers stop sending new connections at once; open connections run on.\n" +
					"The service stays drained through SIGHUP unless the --config file changes it; a restart announces it again.\n" +
					"Only root and the user the node runs as may drain.",
				Flags:        []cli.Flag{socketFlag()},
				Action:       drainCmd,
				OnUsageError: onUsageError,
			},
			{
				Name:      "keygen",
				Usage:     "print a new random cluster key for --key",
				UsageText: "ambassador keygen\n\nExample: ambassador keygen > /etc/ambassador.key; chmod 600 /etc/ambassador.key",
				Action: func(c *cli.Context) error {
					if c.Args().Present() {
						return usagef("keygen: unexpected argument %q", c.Args().First())
					}
					fmt.Fprintln(c.App.Writer, trust.GenerateKey())
					return nil
				},
				OnUsageError: onUsageError,
			},
			{
				Name:         "version",
				Usage:        "print the version, the commit and the Go version it was built from",
				Action:       versionCmd,
				OnUsageError: onUsageError,
			},
		},
	}
}

func buildVersion() string { return currentBuild().String() }

func newLogger(c *cli.Context) (*slog.Logger, error) {
	return newLoggerFrom(c, c)
}

// newLoggerFrom reads --log-level from src (the command line, or the
// command line over the --config file) and logs to c's stderr.
func newLoggerFrom(c *cli.Context, src source) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(src.String("log-level"))); err != nil {
		return nil, usagef("--log-level: %q is not one of debug, info, warn, error", src.String("log-level"))
	}
	h, err := logHandler(c.App.ErrWriter, src.String("log-format"), lvl)
	if err != nil {
		return nil, err
	}
	l := slog.New(h)
	slog.SetDefault(l)
	return l, nil
}

// nodeConfig turns flags into a mesh config; every error is a usage error
// that names the flag and the bad value.
func nodeConfig(c source) (mesh.Config, error) {
	cfg := mesh.DefaultConfig()
	for _, s := range splitList(c.StringSlice("announce"), startsAnnounce) {
		a, err := mesh.ParseAnnounce(s)
		if err != nil {
			return cfg, usagef("--announce %v", err)
		}
		cfg.Announce = append(cfg.Announce, a)
	}
	for _, s := range splitList(c.StringSlice("forward"), nil) {
		f, err := mesh.ParseForward(s)
		if err != nil {
			return cfg, usagef("--forward %v", err)
		}
		cfg.Forward = append(cfg.Forward, f)
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
	for _, s := range splitList(c.StringSlice("upstream"), nil) {
		u, err := mesh.ParseUpstream(s)
		if err != nil {
			return cfg, usagef("--upstream %v", err)
		}
		cfg.Upstream = append(cfg.Upstream, u)
	}
	for _, s := range splitList(c.StringSlice("credentials"), startsNamed) {
		sp, err := creds.Parse(s)
		if err != nil {
			return cfg, usagef("--credentials %v", err)
		}
		cfg.Credentials = append(cfg.Credentials, sp)
	}
	cfg.Resolvers = splitList(c.StringSlice("resolver"), nil)
	cfg.Keys = splitList(c.StringSlice("key"), nil)
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

// settings reads the node's settings: the command line, over the --config
// file when there is one.
func settings(c *cli.Context) (mesh.Config, error) {
	src, err := layered(c)
	if err != nil {
		return mesh.Config{}, err
	}
	return nodeConfig(src)
}

// layered is the command line, over the --config file when there is one.
func layered(c *cli.Context) (source, error) {
	path := c.String("config")
	if path == "" {
		return c, nil
	}
	vals, err := loadConfigFile(path, nodeFlags())
	if err != nil {
		return nil, usageError{err}
	}
	return fileSource{Context: c, vals: vals}, nil
}

// startGC runs a node's first startGCWindow with startGOGC, then returns
// to steadyGOGC with one collection that gives back what the larger goal
// let grow. While a node starts (and a cluster forms around it) it
// allocates about 16 MiB in 20 s, and with GOGC=50 the collector took a
// fifth of all node CPU in the first 20 s of a 100-host lab on two cores,
// where that CPU is what the nodes wait for. Without the collection at the
// end, an idle node collects again only minutes later, and a 25-host lab's
// idle nodes kept 0.2-0.3 MiB more RssAnon than with GOGC=50 throughout.
// Only the node: `forward` and the client commands keep steadyGOGC.
func startGC(ctx context.Context) {
	if !tuneGC {
		return
	}
	debug.SetGCPercent(startGOGC)
	go func() {
		t := time.NewTimer(startGCWindow)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		debug.SetGCPercent(steadyGOGC)
		debug.FreeOSMemory()
	}()
}

func runNode(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q (flags only; see --help)", c.Args().First())
	}
	startGC(c.Context)
	src, err := layered(c)
	if err != nil {
		return err
	}
	log, err := newLoggerFrom(c, src)
	if err != nil {
		return err
	}
	cfg, err := nodeConfig(src)
	if err != nil {
		return err
	}
	cfg.Logger = log
	n, err := mesh.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "ambassador: node %s\n", n.Name())

	hup, _ := c.Context.Value(hupKey{}).(chan os.Signal) // nil in tests: never fires
	reloadDone := make(chan struct{})
	defer func() { <-reloadDone }()
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	defer notifySystemd(ctx, n.Ready(), n.Name(), log)()
	defer startProcsGovernor(ctx, n.Activity, log)()
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			cfg, err := settings(c)
			if err != nil {
				log.Error("reload failed, keeping the running settings", "err", err)
				continue
			}
			if err := n.Reload(cfg); err != nil {
				log.Warn("reload", "err", err)
			}
		}
	}()
	return n.Run(ctx)
}

func forwardCmd(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	if !c.Args().Present() {
		return usagef("forward: want at least one LISTEN=TARGET")
	}
	var pairs []mesh.Static
	for _, s := range c.Args().Slice() {
		p, err := mesh.ParseStatic(s)
		if err != nil {
			return usagef("forward: %v", err)
		}
		pairs = append(pairs, p)
	}
	sc := mesh.StaticConfig{DrainTimeout: c.Duration("drain-timeout"),
		IdleTimeout: c.Duration("idle-timeout"), HalfCloseTimeout: c.Duration("half-close-timeout")}
	if sc.IdleTimeout < 0 {
		return usagef("--idle-timeout %s is negative", sc.IdleTimeout)
	}
	if sc.HalfCloseTimeout < 0 {
		return usagef("--half-close-timeout %s is negative", sc.HalfCloseTimeout)
	}
	return mesh.RunStaticConfig(c.Context, pairs, sc, log)
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

func announceCmd(c *cli.Context) error {
	if !c.Args().Present() {
		return usagef("announce: want at least one NAME[:PORT]=[HOST:]TARGET_PORT")
	}
	var as []mesh.Announce
	for _, s := range c.Args().Slice() {
		a, err := mesh.ParseAnnounce(s)
		if err != nil {
			return usagef("announce: %v", err)
		}
		as = append(as, a)
	}
	sock, err := clientSocket(c)
	if err != nil {
		return err
	}
	for _, a := range as {
		ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
		var resp mesh.AnnounceRequest
		err := mesh.CallSocket(ctx, sock, "POST", "/v1/announce", mesh.AnnounceRequest{Announce: a.String()}, &resp)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, "announced", resp.Announce)
	}
	return nil
}

func drainCmd(c *cli.Context) error {
	if !c.Args().Present() {
		return usagef("drain: want a service NAME")
	}
	for _, name := range c.Args().Slice() {
		if _, err := svcname.Parse(name); err != nil {
			return usagef("drain: %v", err)
		}
	}
	sock, err := clientSocket(c)
	if err != nil {
		return err
	}
	for _, name := range c.Args().Slice() {
		ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
		var resp map[string]string
		err := mesh.CallSocket(ctx, sock, "DELETE", "/v1/announce/"+url.PathEscape(name), nil, &resp)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, "withdrawn", name)
	}
	return nil
}

func fetch(c *cli.Context, path string, v any) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q", c.Args().First())
	}
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	if c.IsSet("http") {
		return mesh.Fetch(ctx, c.String("http"), path, v)
	}
	sock, err := clientSocket(c)
	if err != nil {
		return err
	}
	return mesh.CallSocket(ctx, sock, "GET", path, nil, v)
}

// clientSocket is the control socket a command talks to: --socket, or the
// first default that exists (this user's own node, then the system's).
func clientSocket(c *cli.Context) (string, error) {
	if err := mesh.SocketSupported(); err != nil {
		return "", err
	}
	if c.IsSet("socket") {
		if c.String("socket") == "" {
			return "", usagef("--socket: empty path")
		}
		return c.String("socket"), nil
	}
	cands := mesh.SocketCandidates(os.Geteuid(), os.Getenv("XDG_RUNTIME_DIR"))
	for _, p := range cands {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			return p, nil
		}
	}
	return cands[0], nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func membersCmd(c *cli.Context) error {
	var m mesh.Members
	if err := fetch(c, "/v1/members", &m); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, m)
	}
	tw := newTable(c.App.Writer) // plain unless a terminal: cmd_observe.go
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATE\t")
	for _, mb := range m.Members {
		self := ""
		if mb.Name == m.Node {
			self = "(this node)"
		}
		fmt.Fprintf(tw, "%s\t%s:%d\t%s\t%s\n", mb.Name, mb.Addr, mb.Port, mb.State, self)
	}
	return tw.Flush()
}

func servicesCmd(c *cli.Context) error {
	var s mesh.Services
	if err := fetch(c, "/v1/services", &s); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, s)
	}
	tw := newTable(c.App.Writer) // plain unless a terminal: cmd_observe.go
	fmt.Fprintln(tw, "SERVICE\tPORT\tLISTEN\tSTATE\tCUT (ERR/IDLE/HALF)\tINSTANCES")
	for _, v := range s.Services {
		state := v.State
		if v.Error != "" {
			state += ": " + v.Error
		}
		listen := v.Listen
		if listen == "" {
			listen = "-"
		}
		var inst []string
		for _, in := range v.Instances {
			d := in.Node + " " + in.Health
			if in.Active > 0 {
				d += fmt.Sprintf(" %d active", in.Active)
			}
			if in.Ejected {
				d += " ejected"
			}
			inst = append(inst, d)
		}
		if len(inst) == 0 {
			inst = []string{"-"}
		}
		cut := fmt.Sprintf("%d/%d/%d", v.StreamErrors, v.IdleTimeouts, v.HalfCloseTimeouts)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", v.Name, v.Port, listen, state, cut, strings.Join(inst, ", "))
	}
	return tw.Flush()
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
