// The node: `ambassador` or `ambassador run`.

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/urfave/cli/v2"
)

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
	// A node whose stdout is lost (> /dev/full) still runs, and does not
	// exit 1 for it at the end: the line is news, not the node's work.
	if _, err := fmt.Fprintf(unkept(c.App.Writer), "ambassador: node %s\n", n.Name()); err != nil {
		log.Warn("cannot write the node's name to stdout", "err", err)
	}

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
			reload(c, n, log)
		}
	}()
	return n.Run(ctx)
}

// reloader is what a reload needs of the node: a seam for tests.
type reloader interface{ Reload(mesh.Config) error }

// reload reads the node's settings again (SIGHUP) and applies them to n,
// logging the outcome.
func reload(c *cli.Context, n reloader, log *slog.Logger) {
	cfg, err := settings(c)
	if err != nil {
		log.Error("reload failed, keeping the running settings", "err", err)
		return
	}
	// Every setting was checked above: what the node refuses now is a
	// setting that takes a restart (or a key ring that would not take the
	// new keys), and the rest is applied.
	if err := n.Reload(cfg); err != nil {
		log.Warn("reload applied in part: what the error names keeps its running value", "err", err)
	}
}
