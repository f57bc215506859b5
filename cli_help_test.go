package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"text/template"

	"github.com/urfave/cli/v2"
)

// The release binary prints help without text/template
// (third_party/urfave-cli/PATCHES.md). These tests render every help page
// both ways: through upstream urfave/cli's templates executed by
// text/template (imported here, in a test, never in the binary), and
// through the patched renderer; they must agree byte for byte.

// textTemplateExecutor is upstream v2.27.7's printHelpCustom body, which
// the patch replaced: parse templ with the func map, add the
// sub-templates, execute. Upstream ignores a sub-template's parse error;
// here it fails the comparison instead.
func textTemplateExecutor(w io.Writer, templ string, templates map[string]string, funcs map[string]interface{}, data interface{}) error {
	t := template.Must(template.New("help").Funcs(funcs).Parse(templ))
	for name, value := range templates {
		if _, err := t.New(name).Parse(value); err != nil {
			return err
		}
	}
	return t.Execute(w, data)
}

// bothWays runs f once with text/template and once without, and fails
// unless the two outputs are equal. It returns the output. It sets the
// package variable cli.HelpTemplateExecutor, so no test of this package
// may print help in parallel with it (none is parallel).
func bothWays(t *testing.T, what string, f func() string) string {
	t.Helper()
	if cli.HelpTemplateExecutor != nil {
		t.Fatal("cli.HelpTemplateExecutor is set outside bothWays: the release build would not render help itself")
	}
	cli.HelpTemplateExecutor = textTemplateExecutor
	want := f()
	cli.HelpTemplateExecutor = nil
	got := f()
	if got != want {
		t.Errorf("%s: help without text/template differs from upstream's templates\n%s", what, firstDifference(want, got))
	}
	return got
}

// firstDifference shows where two outputs part, with some context.
func firstDifference(want, got string) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(0, i-80)
	return fmt.Sprintf("at byte %d (len want %d, got %d)\nwant ...%q\ngot  ...%q", i, len(want), len(got),
		want[from:min(len(want), i+80)], got[from:min(len(got), i+80)])
}

// helpInvocations lists the command lines that print help for an app
// whose commands are cmds: the app's own, then for every command and
// subcommand (recursively) its --help, -h, help and h forms, and `help
// NAME` from its parent.
func helpInvocations(cmds []*cli.Command) [][]string {
	out := [][]string{{"--help"}, {"-h"}, {"help"}, {"h"}, {"help", "help"}, {"help", "h"}}
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			for _, name := range c.Names() {
				p := append(append([]string{}, path...), name)
				parentHelp := append(append([]string{}, path...), "help", name)
				out = append(out, append(p[:len(p):len(p)], "--help"), append(p[:len(p):len(p)], "-h"),
					append(p[:len(p):len(p)], "help"), append(p[:len(p):len(p)], "h"), parentHelp)
				walk(p, c.Subcommands)
			}
		}
	}
	walk(nil, cmds)
	return out
}

// TestHelpWithoutTemplates runs every help command line of ambassador's
// own CLI, from newApp, both ways.
func TestHelpWithoutTemplates(t *testing.T) {
	lines := helpInvocations(newApp(io.Discard, io.Discard).Commands)
	if len(lines) < 50 {
		t.Fatalf("only %d help command lines: newApp's commands not walked", len(lines))
	}
	for _, args := range lines {
		var code int
		var stderr string
		out := bothWays(t, strings.Join(args, " "), func() string {
			var o, e bytes.Buffer
			code = run(append([]string{"ambassador"}, args...), &o, &e)
			stderr = e.String()
			return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", code, o.String(), e.String())
		})
		// A page was printed: the comparison is not between two empty
		// outputs.
		if code != 0 || !strings.Contains(out, "stdout:\nNAME:\n") || !strings.Contains(out, "\nUSAGE:\n   ") || stderr != "" {
			t.Errorf("ambassador %s: no help page:\n%s", strings.Join(args, " "), out)
		}
	}

	// Every command's page printed directly with each default template,
	// and the app's, once the app has set them up (help flag, help
	// subcommand, HelpName) by printing them.
	app := newApp(io.Discard, io.Discard)
	for _, c := range app.Commands {
		if err := app.Run([]string{"ambassador", c.Name, "--help"}); err != nil {
			t.Fatal(err)
		}
	}
	renderAll(t, "ambassador", app, nil)
}

// renderAll prints app's page with AppHelpTemplate and every command's
// and subcommand's with CommandHelpTemplate and SubcommandHelpTemplate,
// through HelpPrinterCustom with custom, both ways.
func renderAll(t *testing.T, name string, app *cli.App, custom func() map[string]interface{}) {
	t.Helper()
	render := func(templ string, data interface{}) func() string {
		return func() string {
			var b bytes.Buffer
			var funcs map[string]interface{}
			if custom != nil {
				funcs = custom() // printHelpCustom changes the map it is given
			}
			cli.HelpPrinterCustom(&b, templ, data, funcs)
			return b.String()
		}
	}
	if out := bothWays(t, name+" app page", render(cli.AppHelpTemplate, app)); !strings.HasPrefix(out, "NAME:") {
		t.Errorf("%s: app page is %q", name, out)
	}
	seen := map[*cli.Command]bool{} // the help command is its own subcommand once set up
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			if seen[c] {
				continue
			}
			seen[c] = true
			for _, templ := range []string{cli.CommandHelpTemplate, cli.SubcommandHelpTemplate} {
				if out := bothWays(t, name+" "+c.FullName()+" page", render(templ, c)); !strings.HasPrefix(out, "NAME:") {
					t.Errorf("%s %s: page is %q", name, c.FullName(), out)
				}
			}
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
}

// syntheticApps cover what the templates can print that ambassador's own
// CLI does not: categories of commands and flags, no flags at all, no
// UsageText, ArgsUsage and Args, Description, Category, Version and
// HideVersion, authors, copyright, hidden commands and flags, aliases,
// nested subcommands, ExtraInfo and lines long enough to wrap.
func syntheticApps() map[string]func() *cli.App {
	long := strings.TrimSpace(strings.Repeat("wrap these words at the line length ", 290)) // > 10,000 bytes
	nested := func() []*cli.Command {
		return []*cli.Command{
			{Name: "leaf", Aliases: []string{"l"}, Usage: "a leaf", ArgsUsage: "FILE...", Description: "line one\nline two",
				Flags: []cli.Flag{&cli.IntFlag{Name: "n", Value: 3, Usage: "count"}}},
			{Name: "secret", Usage: "hidden", Hidden: true},
			{Name: "more", Usage: "one more level", Category: "deep", Subcommands: []*cli.Command{
				{Name: "bottom", Usage: "the bottom", Args: true, HideHelp: true},
			}},
		}
	}
	return map[string]func() *cli.App{
		"bare": func() *cli.App { return &cli.App{Name: "bare"} },
		"hide help": func() *cli.App {
			return &cli.App{Name: "quiet", HideHelp: true, HideHelpCommand: true, Action: func(*cli.Context) error { return nil }}
		},
		"full": func() *cli.App {
			return &cli.App{
				Name: "full", Usage: "everything at once", Version: "v1.2.3", ArgsUsage: "[ARGS]",
				Description: "A description\nover two lines.",
				Authors:     []*cli.Author{{Name: "Ann", Email: "ann@example.org"}, {Name: "Bob"}},
				Copyright:   "(c) nobody",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "alpha", Aliases: []string{"a"}, Usage: "the `A`", Category: "first"},
					&cli.BoolFlag{Name: "beta", Usage: "a switch", Category: "second"},
					&cli.DurationFlag{Name: "gamma", Usage: "no category", EnvVars: []string{"GAMMA"}},
					&cli.StringFlag{Name: "delta", Hidden: true, Category: "first"},
				},
				Commands: []*cli.Command{
					{Name: "one", Aliases: []string{"1", "uno"}, Usage: "first", Category: "numbers", Subcommands: nested(),
						Flags: []cli.Flag{&cli.StringFlag{Name: "x", Category: "xs"}, &cli.StringFlag{Name: "y"}}},
					{Name: "two", Usage: "second", Category: "numbers", UsageText: "full two [stuff]\n\nmore text"},
					{Name: "plain", Usage: "no category", Args: true},
					{Name: "ghost", Usage: "hidden", Hidden: true, Category: "numbers"},
				},
			}
		},
		"one author, version hidden": func() *cli.App {
			return &cli.App{
				Name: "solo", Version: "v9", HideVersion: true, Args: true, Authors: []*cli.Author{{Name: "Ann"}},
				Flags: []cli.Flag{&cli.IntFlag{Name: "n"},
					&cli.StringFlag{Name: "m", Usage: "a usage over\ntwo lines, the second long enough to wrap at forty columns"}},
				Commands: nested(),
			}
		},
		"usage text, long lines": func() *cli.App {
			return &cli.App{
				Name: "long", Usage: long, UsageText: "long [x]\n" + long, Description: long, Copyright: long,
				Commands: []*cli.Command{{Name: "c", Usage: long, Description: long, UsageText: long, Category: "cat"}},
			}
		},
		"extra info": func() *cli.App {
			return &cli.App{Name: "extra", ExtraInfo: func() map[string]string { return map[string]string{"k": "v"} },
				Commands: nested()}
		},
		"only hidden commands": func() *cli.App {
			return &cli.App{Name: "hid", HideHelpCommand: true, Commands: []*cli.Command{{Name: "ghost", Hidden: true}}}
		},
	}
}

// TestHelpWithoutTemplatesEdgeCases runs the help command lines of the
// synthetic apps, and prints their pages directly (also wrapped at 40
// columns, HelpPrinterCustom's wrapAt), both ways.
func TestHelpWithoutTemplatesEdgeCases(t *testing.T) {
	for name, newSynth := range syntheticApps() {
		t.Run(name, func(t *testing.T) {
			lines := helpInvocations(newSynth().Commands)
			var walk func(path []string, cmds []*cli.Command)
			walk = func(path []string, cmds []*cli.Command) { // a command with no action prints its help
				for _, c := range cmds {
					p := append(append([]string{}, path...), c.Name)
					lines = append(lines, p)
					walk(p, c.Subcommands)
				}
			}
			walk(nil, newSynth().Commands)
			pages := 0
			for _, args := range lines {
				out := bothWays(t, name+": "+strings.Join(args, " "), func() string {
					var o, e bytes.Buffer
					app := newSynth()
					app.Writer, app.ErrWriter = &o, &e
					app.ExitErrHandler = func(*cli.Context, error) {}
					err := app.Run(append([]string{app.Name}, args...))
					return fmt.Sprintf("err %v\nstdout:\n%s\nstderr:\n%s", err, o.String(), e.String())
				})
				if strings.Contains(out, "stdout:\nNAME:") {
					pages++
				}
			}
			if pages == 0 && !newSynth().HideHelp {
				t.Errorf("none of %d command lines printed a help page", len(lines))
			}

			app := newSynth()
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			app.ExitErrHandler = func(*cli.Context, error) {}
			seen := map[*cli.Command]bool{} // the help command is its own subcommand once set up
			var setup func(path []string, cmds []*cli.Command)
			setup = func(path []string, cmds []*cli.Command) {
				for _, c := range cmds {
					if seen[c] {
						continue
					}
					seen[c] = true
					p := append(append([]string{}, path...), c.Name)
					_ = app.Run(append(append([]string{app.Name}, p...), "--help"))
					setup(p, c.Subcommands)
				}
			}
			_ = app.Run([]string{app.Name, "--help"})
			setup(nil, app.Commands)
			renderAll(t, name, app, nil)
			renderAll(t, name+", wrapped at 40", app, func() map[string]interface{} {
				return map[string]interface{}{"wrapAt": func() int { return 40 }}
			})
			renderAll(t, name+", ExtraInfo", app, func() map[string]interface{} {
				return map[string]interface{}{"ExtraInfo": func() map[string]string { return nil }}
			})
		})
	}
}

// TestHelpNonDefaultTemplate: a template other than the defaults is not
// silently ignored. Without an executor it prints no help and says why on
// cli.ErrWriter; with one, it is rendered.
func TestHelpNonDefaultTemplate(t *testing.T) {
	if cli.HelpTemplateExecutor != nil {
		t.Fatal("cli.HelpTemplateExecutor is set: the release build would not render help itself")
	}
	var errOut bytes.Buffer
	saved := cli.ErrWriter
	cli.ErrWriter = &errOut
	defer func() { cli.ErrWriter = saved }()
	app := &cli.App{Name: "x", Usage: "an app", HideHelp: true}
	defaultApp := cli.AppHelpTemplate
	tests := []struct {
		name     string
		print    func(w io.Writer)
		executor bool
		want     string // on w; empty: nothing, and the error on ErrWriter
	}{
		{name: "custom template", print: func(w io.Writer) { cli.HelpPrinter(w, "{{.Name}}: {{.Usage}}\n", app) }},
		{name: "custom template, executor set", executor: true, want: "x: an app\n",
			print: func(w io.Writer) { cli.HelpPrinter(w, "{{.Name}}: {{.Usage}}\n", app) }},
		{name: "app template for a command", print: func(w io.Writer) { cli.HelpPrinter(w, cli.AppHelpTemplate, &cli.Command{Name: "c"}) }},
		{name: "command template for the app", print: func(w io.Writer) { cli.HelpPrinter(w, cli.CommandHelpTemplate, app) }},
		{name: "other data", print: func(w io.Writer) { cli.HelpPrinter(w, cli.AppHelpTemplate, struct{ Name string }{"s"}) }},
		{name: "nil app", print: func(w io.Writer) { cli.HelpPrinter(w, cli.AppHelpTemplate, (*cli.App)(nil)) }},
		{name: "builtin overridden", print: func(w io.Writer) {
			cli.HelpPrinterCustom(w, cli.AppHelpTemplate, app, map[string]interface{}{"len": func(interface{}) int { return 0 }})
		}},
		{name: "function of another type", print: func(w io.Writer) {
			cli.HelpPrinterCustom(w, cli.AppHelpTemplate, app, map[string]interface{}{"join": func(...string) string { return "" }})
		}},
		{name: "AppHelpTemplate replaced", print: func(w io.Writer) {
			cli.AppHelpTemplate = strings.Replace(defaultApp, "NAME:", "Name:", 1)
			defer func() { cli.AppHelpTemplate = defaultApp }()
			_ = cli.ShowAppHelp(cli.NewContext(&cli.App{Name: "x", Writer: w}, nil, nil))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errOut.Reset()
			if tc.executor {
				cli.HelpTemplateExecutor = textTemplateExecutor
				defer func() { cli.HelpTemplateExecutor = nil }()
			}
			var out bytes.Buffer
			tc.print(&out)
			if out.String() != tc.want {
				t.Errorf("printed %q, want %q", out.String(), tc.want)
			}
			wantErr := ""
			if tc.want == "" {
				wantErr = "cli: this build renders only urfave/cli's default help templates"
			}
			if got := errOut.String(); !strings.Contains(got, wantErr) || (wantErr == "" && got != "") {
				t.Errorf("ErrWriter got %q, want %q", got, wantErr)
			}
		})
	}
}

// TestReleaseBinaryHasNoTemplateExecutor: the release build links neither
// text/template's executor nor reflect.Value.MethodByName, whose presence
// makes the linker keep every exported method of every type (issue 10:
// 0.67 MB of text, 1.0-1.3 MiB resident per node, docs/memory.md). A
// reachable MethodByName may come back with any new dependency, not only
// through help; then this test names it.
func TestReleaseBinaryHasNoTemplateExecutor(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binary")
	}
	syms := releaseSymbols(t, "github.com/urfave/cli/v2.printHelpCustom")
	for _, banned := range []string{"text/template.(*state).evalField", "text/template.(*Template).Execute", "reflect.Value.MethodByName"} {
		if syms[banned] {
			t.Errorf("the release binary links %s: the linker keeps every exported method (see third_party/urfave-cli/PATCHES.md)", banned)
		}
	}
}
