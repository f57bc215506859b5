// `ambassador forward`: static ports with no mesh.

package main

import (
	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/urfave/cli/v2"
)

func forwardCmd(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	if !c.Args().Present() {
		return usagef("forward: want at least one LISTEN=TARGET")
	}
	if err := noFlagAfterArgs(c, "LISTEN=TARGET..."); err != nil {
		return err
	}
	var pairs []mesh.Static
	given := map[string]string{} // listen address: the pair that has it
	for _, s := range c.Args().Slice() {
		p, err := mesh.ParseStatic(s)
		if err != nil {
			return usagef("forward: %v", err)
		}
		// One listener per address: a second pair for it would be
		// dropped without a word.
		if prev, ok := given[p.Listen]; ok {
			return usagef("forward: %q: listen address %s is also in %q", s, p.Listen, prev)
		}
		given[p.Listen] = s
		// Each connection would be forwarded to the listener again, until
		// the process runs out of file descriptors (forward 6379=6379,
		// the target host forgotten).
		if p.Target == p.Listen {
			return usagef("forward: %q: the target is the listen address itself", s)
		}
		pairs = append(pairs, p)
	}
	sc := mesh.StaticConfig{DrainTimeout: c.Duration("drain-timeout"),
		IdleTimeout: c.Duration("idle-timeout"), HalfCloseTimeout: c.Duration("half-close-timeout")}
	if sc.DrainTimeout < 0 {
		return usagef("--drain-timeout %s is negative", sc.DrainTimeout)
	}
	if sc.IdleTimeout < 0 {
		return usagef("--idle-timeout %s is negative", sc.IdleTimeout)
	}
	if sc.HalfCloseTimeout < 0 {
		return usagef("--half-close-timeout %s is negative", sc.HalfCloseTimeout)
	}
	return mesh.RunStaticConfig(c.Context, pairs, sc, log)
}
