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
	for _, s := range c.Args().Slice() {
		p, err := mesh.ParseStatic(s) // refuses a pair that loops back
		if err != nil {
			return usagef("forward: %v", err)
		}
		pairs = append(pairs, p)
	}
	if err := mesh.CheckStatics(pairs); err != nil {
		return usagef("forward: %v", err)
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
