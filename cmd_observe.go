package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "follow what changes in the mesh, one line per event",
		UsageText: "ambassador watch [--recent] [--json] [--http ADDR]\n\n" +
			"Prints TIME WHAT NODE SERVICE DETAIL for every member that joins, leaves, fails or comes back,\n" +
			"every service instance that appears or is withdrawn, every health change of this node's services\n" +
			"and every listener that opens, is busy or closes, until interrupted or the node stops.\n" +
			"With --json, one JSON object per line.",
		Flags: []cli.Flag{watchHTTPFlag(), jsonFlag(),
			&cli.BoolFlag{Name: "recent", EnvVars: []string{"AMBASSADOR_RECENT"},
				Usage: "first print the node's recent events (it keeps the last 128), then follow"}},
		Action:       watchCmd,
		OnUsageError: onUsageError,
	}
}

func connectionsCommand() *cli.Command {
	return &cli.Command{
		Name:         "connections",
		Usage:        "list the connections open now through this node, with bytes each way and age",
		UsageText:    "ambassador connections [--json] [--socket PATH | --http ADDR]",
		Flags:        []cli.Flag{readSocketFlag(), readHTTPFlag(), jsonFlag()},
		Action:       connectionsCmd,
		OnUsageError: onUsageError,
	}
}

// watchHTTPFlag is watch's --http: the event stream is read from the TCP
// status address (the control socket serves it too, but the stream client
// speaks TCP only).
func watchHTTPFlag() cli.Flag {
	return &cli.StringFlag{Name: "http", Value: mesh.DefaultConfig().HTTP, EnvVars: []string{"AMBASSADOR_HTTP"},
		Usage: "`ADDR` of the node's status address"}
}

func watchCmd(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("watch: unexpected argument %q", c.Args().First())
	}
	addr, err := statusAddr(c)
	if err != nil {
		return err
	}
	w := c.App.Writer
	asJSON, color := c.Bool("json"), isTerminal(w)
	enc := json.NewEncoder(w)
	err = mesh.Watch(c.Context, addr, c.Bool("recent"), func(e mesh.Event) error {
		if asJSON {
			return enc.Encode(e)
		}
		_, err := io.WriteString(w, eventLine(e, color))
		return err
	})
	if err != nil {
		return err
	}
	if c.Context.Err() == nil {
		// run prints the message, once, after "ambassador: ".
		return cli.Exit("watch: the node closed the event stream (stopped?)", exitFailure)
	}
	return nil
}

// eventLine is one event as watch prints it: local time, what, node,
// service and detail in fixed columns, "-" for an empty one.
func eventLine(e mesh.Event, color bool) string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	what := fmt.Sprintf("%-17s", printable(e.Type))
	if color {
		what = paint(e.Type, what)
	}
	line := fmt.Sprintf("%s  %s  %-20s  %-15s  %s", e.Time.Local().Format(time.TimeOnly), what,
		printable(dash(e.Node)), printable(dash(e.Service)), printable(e.Detail))
	return strings.TrimRight(line, " ") + "\n"
}

func connectionsCmd(c *cli.Context) error {
	var cs mesh.Connections
	if err := fetch(c, "/v1/connections", &cs); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, cs)
	}
	tw := newTable(c.App.Writer)
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tBACKEND\tCLIENT\tAGE\tIN\tOUT")
	for _, x := range cs.Connections {
		inst := x.Instance
		if inst == "" {
			inst = "-"
		}
		age := time.Duration(x.Age * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Service, inst, x.Backend, x.Client, age, humanBytes(x.BytesIn), humanBytes(x.BytesOut))
	}
	if len(cs.Connections) == 0 {
		fmt.Fprintln(tw, "-\t-\t-\t-\t-\t-\t-")
	}
	return tw.Flush()
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// isTerminal reports whether w is a terminal that may get colour: not
// when it is a pipe or a file, nor with NO_COLOR set or TERM=dumb.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// printable returns s with what a terminal would act on instead of show
// (control characters, invalid UTF-8) written as Go escapes: \x1b, \n,
// \xff. A peer's node name comes from gossip as any string memberlist
// carries, and watch and the tables print it to the operator's terminal.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unicode.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

// paint colours s by what word means: green for good states, red for bad,
// yellow for in between.
func paint(word, s string) string {
	code := ""
	switch word {
	case "alive", "passing", "listening", "local", "member-joined", "member-back", "service-appeared", "listener-opened":
		code = "32"
	case "dead", "failing", "error", "member-failed", "listener-busy":
		code = "31"
	case "suspect", "pending", "left", "member-left", "service-withdrawn", "listener-closed", "lagged", "health-changed":
		code = "33"
	}
	if code == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// table is a drop-in for the text/tabwriter the tables used: write
// tab-separated lines, then Flush. Columns are padded by two spaces as
// before. On a terminal the header line is bold and state words are
// coloured; otherwise (a pipe, a file, NO_COLOR) the output is plain text.
type table struct {
	w     io.Writer
	buf   bytes.Buffer
	color bool
}

func newTable(w io.Writer) *table { return &table{w: w, color: isTerminal(w)} }

func (t *table) Write(p []byte) (int, error) { return t.buf.Write(p) }

// Flush aligns every cell but the last of each line, like tabwriter with
// padding 2, and writes the table.
func (t *table) Flush() error {
	text := strings.TrimSuffix(t.buf.String(), "\n")
	t.buf.Reset()
	if text == "" {
		return nil
	}
	var rows [][]string
	var widths []int
	for _, line := range strings.Split(text, "\n") {
		cells := strings.Split(line, "\t")
		for i, c := range cells {
			cells[i] = printable(c)
		}
		for i, c := range cells[:len(cells)-1] {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
		rows = append(rows, cells)
	}
	var out strings.Builder
	for r, cells := range rows {
		for i, c := range cells {
			styled := c
			if t.color && r == 0 {
				styled = "\x1b[1m" + c + "\x1b[0m"
			} else if t.color {
				word, _, _ := strings.Cut(c, ":")
				styled = paint(word, c)
			}
			out.WriteString(styled)
			if i < len(cells)-1 {
				out.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		out.WriteByte('\n')
	}
	_, err := io.WriteString(t.w, out.String())
	return err
}
