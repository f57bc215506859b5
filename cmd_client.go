// The commands that talk to a running node: announce, drain, members,
// services.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/urfave/cli/v2"
)

func announceCmd(c *cli.Context) error {
	if !c.Args().Present() {
		return usagef("announce: want at least one NAME[:PORT]=[HOST:]TARGET_PORT")
	}
	if err := noFlagAfterArgs(c, "NAME[:PORT]=[HOST:]TARGET_PORT..."); err != nil {
		return err
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
	if err := noFlagAfterArgs(c, "NAME..."); err != nil {
		return err
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

// noFlagAfterArgs refuses a flag after the command's arguments, naming
// it: urfave/cli reads flags only up to the first argument, so it would
// otherwise be reported as a bad argument. usage is what the arguments
// look like. No argument of these commands starts with "-".
func noFlagAfterArgs(c *cli.Context, usage string) error {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") {
			return usagef("%s: flag %q after the arguments: flags go first (ambassador %s [flags] %s)", c.Command.Name, a, c.Command.Name, usage)
		}
	}
	return nil
}

func fetch(c *cli.Context, path string, v any) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q", c.Args().First())
	}
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	// An empty --http is the control socket: AMBASSADOR_HTTP="" turns
	// the node's status address off, and this command reads the same
	// variable. An empty --socket is, likewise, the node's "no control
	// socket": the status address then, the default one unless --http
	// gives it. With both empty the node has neither.
	noSocket := c.IsSet("socket") && c.String("socket") == ""
	switch {
	case c.String("http") != "" && c.String("socket") != "" && flagOrigin(c, "http") == "--http" && flagOrigin(c, "socket") == "--socket":
		// One or the other, as the usage line says; from the
		// environment, the command line picks.
		return usagef("--socket and --http are both given: give one (--socket reads the control socket, --http the status address)")
	case c.String("http") != "":
		addr, err := statusAddr(c)
		if err != nil {
			return err
		}
		return mesh.Fetch(ctx, addr, path, v)
	case noSocket && c.IsSet("http"):
		return usagef("%s and %s are both empty: a node run so has neither a control socket nor a status address to read; give the one it has",
			flagOrigin(c, "socket"), flagOrigin(c, "http"))
	case noSocket:
		addr := mesh.DefaultConfig().HTTP
		if err := mesh.Fetch(ctx, addr, path, v); err != nil {
			return fmt.Errorf("%s is empty, so not the control socket but the status address %s: %w", flagOrigin(c, "socket"), addr, err)
		}
		return nil
	}
	sock, err := clientSocket(c)
	if err != nil {
		return err
	}
	return mesh.CallSocket(ctx, sock, "GET", path, nil, v)
}

// statusAddr is --http of a command that reads the node's status address,
// checked: a bad one is bad usage, named as the user gave it (the flag or
// AMBASSADOR_HTTP).
func statusAddr(c *cli.Context) (string, error) {
	if c.String("http") == "" {
		return "", usagef("%s: empty: give the node's status address, e.g. %s", flagOrigin(c, "http"), mesh.DefaultConfig().HTTP)
	}
	addr, err := mesh.ParseAddr(c.String("http"), "127.0.0.1")
	if err != nil {
		return "", usagef("%s: %v", flagOrigin(c, "http"), err)
	}
	return addr, nil
}

// clientSocket is the control socket a command talks to: --socket, or the
// first default that exists (this user's own node, then the system's).
func clientSocket(c *cli.Context) (string, error) {
	if err := mesh.SocketSupported(); err != nil {
		return "", err
	}
	if c.IsSet("socket") {
		if c.String("socket") == "" {
			// The node reads it as "no control socket", and this
			// command has no other way in.
			return "", usagef("%s: empty path: %s needs the node's control socket (a node run with it empty has none)", flagOrigin(c, "socket"), c.Command.Name)
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
