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
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

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
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), hupKey{}, hup))
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// The signal goroutine ends when done closes, and run waits for it
	// (deferred in this order: close first, then wait).
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan struct{})
	defer close(done)
	wg.Go(func() {
		handleSignals(sigs, done, cancel, time.Now, func() {
			fmt.Fprintln(stderr, "ambassador: second signal, exiting now")
			os.Exit(exitFailure)
		})
	})
	out := &outWriter{w: stdout}
	app := newApp(out, stderr)
	// urfave/cli ends `help NAME` for a NAME that is no command with exit
	// status 3; it is bad usage (2). With CommandNotFound set it returns
	// nil instead, and the name is here, with the command whose help was
	// asked for when it is not the app (ambassador forward -h NAME).
	var noCommand, of string
	app.CommandNotFound = func(c *cli.Context, name string) {
		noCommand = name
		if c.Command != nil && c.App.Command(c.Command.Name) == c.Command {
			of = c.Command.Name
		}
	}
	err := app.RunContext(ctx, args)
	switch {
	case err != nil || noCommand == "":
	case of != "":
		err = usagef("help: %s has no command %q; ambassador %s --help shows its help", of, noCommand, of)
	default:
		err = usagef("help: no command %q (ambassador help lists them)", noCommand)
	}
	if werr := out.Err(); err == nil && werr != nil {
		err = fmt.Errorf("cannot write the output: %w", werr)
	}
	if err == nil {
		return exitOK
	}
	if msg := err.Error(); msg != "" { // cli.Exit("", code): the command said it already
		fmt.Fprintf(stderr, "ambassador: %s\n", msg)
	}
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

// outWriter is stdout, keeping its first write error: urfave/cli's help
// and version printers drop theirs, and `ambassador --help > /dev/full`
// exited 0. run turns a kept error into exit 1.
type outWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error // the first write error
}

func (o *outWriter) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		o.mu.Lock()
		if o.err == nil {
			o.err = err
		}
		o.mu.Unlock()
	}
	return n, err
}

// Err is the first write error, or nil.
func (o *outWriter) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// unkept is w without outWriter's record: for a line whose loss is no
// failure of the command.
func unkept(w io.Writer) io.Writer {
	if o, ok := w.(*outWriter); ok {
		return o.w
	}
	return w
}

// onUsageError makes a flag parse error bad usage (exit 2). A flag given
// twice or with a bad value reports itself (guardFlags): the flag
// package's wrapping would bury what it says.
func onUsageError(c *cli.Context, err error, _ bool) error {
	if ferr := flagParseError(c); ferr != nil {
		return ferr
	}
	return usageError{err}
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
	app := &cli.App{
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
		Before:         noFlagsBeforeCommand,
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
				Flags:        []cli.Flag{readSocketFlag(), readHTTPFlag(), jsonFlag()},
				Action:       membersCmd,
				OnUsageError: onUsageError,
			},
			{
				Name:         "services",
				Usage:        "list the services in the catalog and this node's listeners",
				UsageText:    "ambassador services [--json] [--socket PATH | --http ADDR]",
				Flags:        []cli.Flag{readSocketFlag(), readHTTPFlag(), jsonFlag()},
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
						Usage: "`DURATION` open connections may keep running once shutdown starts"},
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
					// A key that did not reach the file (a full disk) is
					// lost: that is a failure, not exit 0.
					_, err := fmt.Fprintln(c.App.Writer, trust.GenerateKey())
					return err
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
	guardFlags(app)
	return app
}

// noFlagsBeforeCommand refuses the node's flags on the command line before
// a command (ambassador --cluster lab run): they belong to the app, not to
// the command, which reads its own flags and would drop them without a
// word. The environment's AMBASSADOR_* variables apply to every command
// and are no error.
func noFlagsBeforeCommand(c *cli.Context) error {
	cmd := c.Args().First()
	if c.App.Command(cmd) == nil || c.NumFlags() == 0 {
		return nil
	}
	name := "a flag"
	for _, f := range c.App.Flags {
		n := f.Names()[0]
		if c.IsSet(n) && !fromEnv(f) {
			name = "--" + n
			break
		}
	}
	return usagef("%s is given before the command %q: put it after the command (ambassador %s --flag), or run a node with no command", name, cmd, cmd)
}

// fromEnv reports whether one of f's environment variables is set.
func fromEnv(f cli.Flag) bool {
	ef, ok := f.(interface{ GetEnvVars() []string })
	if !ok {
		return false
	}
	for _, v := range ef.GetEnvVars() {
		if _, ok := os.LookupEnv(v); ok {
			return true
		}
	}
	return false
}

// signalEcho is how long after the first SIGINT or SIGTERM another one is
// taken for an echo of it rather than a request to exit at once: GNU
// timeout sends its signal to the command and then to its own process
// group, so `timeout 60 ambassador` gets two within microseconds. A person
// pressing Ctrl-C twice is far slower.
const signalEcho = 200 * time.Millisecond

// handleSignals reads sigs until done closes: the first signal calls
// cancel, which starts the graceful leave; a later one, unless it is an
// echo (within signalEcho of the first), calls exit.
func handleSignals(sigs <-chan os.Signal, done <-chan struct{}, cancel func(), now func() time.Time, exit func()) {
	var first time.Time
	for {
		select {
		case <-done:
			return
		case <-sigs:
			switch t := now(); {
			case first.IsZero():
				first = t
				cancel()
			case t.Sub(first) < signalEcho:
			default:
				exit()
				return
			}
		}
	}
}

func buildVersion() string { return currentBuild().String() }
