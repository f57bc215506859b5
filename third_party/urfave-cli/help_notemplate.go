package cli

// Not in upstream urfave/cli: ambassador's patch (PATCHES.md).
//
// The three default help templates of template.go, rendered in plain Go,
// so that a program printing help does not link text/template's executor.
// That executor looks fields and methods up by name
// (reflect.Value.MethodByName); once such a call is reachable, the Go
// linker keeps every exported method of every type that can reach an
// interface: in ambassador 0.67 MB of text and 1.3 MB of rodata and
// pclntab, 1.0-1.3 MiB of it resident in every process.
//
// Each function below follows one template of template.go, action by
// action, and calls the template functions through the func map
// printHelpCustom built, so that overrides given to HelpPrinterCustom
// (wrapAt's wrap, or a replacement join) apply as they would in the
// template. Keep them in step with template.go on an upgrade; ambassador's
// TestHelpWithoutTemplates renders every help page both ways and compares
// the bytes.

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// The default templates as they were at init: AppHelpTemplate and the
// others are exported variables a program may replace, and a replaced one
// is not what the functions below render.
var (
	defaultAppHelpTemplate        = AppHelpTemplate
	defaultCommandHelpTemplate    = CommandHelpTemplate
	defaultSubcommandHelpTemplate = SubcommandHelpTemplate
)

// errNotDefaultHelp says that a template (or a func map, or data) is not
// one this renderer knows; printHelpCustom writes it to ErrWriter.
var errNotDefaultHelp = errors.New("cli: this build renders only urfave/cli's default help templates, with their default functions, for an *App or *Command " +
	"(set cli.HelpTemplateExecutor to render others with text/template; see third_party/urfave-cli/PATCHES.md)")

// helpFuncs are the functions the default templates call, taken from the
// func map.
type helpFuncs struct {
	join           func([]string, string) string
	subtract       func(int, int) int
	indent         func(int, string) string
	wrap           func(string, int) string
	offset         func(string, int) int
	offsetCommands func([]*Command, int) int
}

// lookupHelpFuncs takes the functions from m. It fails when one has
// another type than the default's, or when m overrides a builtin the
// templates call (len, eq, ne, not): a template would then call a
// function this renderer does not.
func lookupHelpFuncs(m map[string]interface{}) (f helpFuncs, ok bool) {
	for _, builtin := range []string{"len", "eq", "ne", "not"} {
		if _, over := m[builtin]; over {
			return f, false
		}
	}
	if f.join, ok = m["join"].(func([]string, string) string); !ok {
		return f, false
	}
	if f.subtract, ok = m["subtract"].(func(int, int) int); !ok {
		return f, false
	}
	if f.indent, ok = m["indent"].(func(int, string) string); !ok {
		return f, false
	}
	if f.wrap, ok = m["wrap"].(func(string, int) string); !ok {
		return f, false
	}
	if f.offset, ok = m["offset"].(func(string, int) int); !ok {
		return f, false
	}
	f.offsetCommands, ok = m["offsetCommands"].(func([]*Command, int) int)
	return f, ok
}

// renderDefaultHelp writes what text/template would write for templ and
// data, when templ is one of the default templates and data the type it
// is printed for; otherwise it writes nothing and returns
// errNotDefaultHelp.
//
// A method that panics (upstream's VisibleCategories does, on a command
// whose help is asked for by `help NAME` before it was set up) ends the
// page where text/template would end it, which recovers the panic as an
// execution error: what came before it is written, and the error
// returned, so that printHelpCustom does not flush, as upstream.
func renderDefaultHelp(w io.Writer, templ string, data interface{}, funcMap map[string]interface{}) (err error) {
	f, ok := lookupHelpFuncs(funcMap)
	if !ok {
		return errNotDefaultHelp
	}
	var b strings.Builder
	defer func() {
		if r := recover(); r != nil {
			_, _ = io.WriteString(w, b.String())
			err = fmt.Errorf("cli: rendering help: %v", r)
		}
	}()
	switch d := data.(type) {
	case *App:
		if d == nil || templ != defaultAppHelpTemplate {
			return errNotDefaultHelp
		}
		f.appHelp(&b, d)
	case *Command:
		if d == nil {
			return errNotDefaultHelp
		}
		switch templ {
		case defaultCommandHelpTemplate:
			f.commandHelp(&b, d, false)
		case defaultSubcommandHelpTemplate:
			f.commandHelp(&b, d, true)
		default:
			return errNotDefaultHelp
		}
	default:
		return errNotDefaultHelp
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// appHelp is AppHelpTemplate.
func (f helpFuncs) appHelp(b *strings.Builder, a *App) {
	b.WriteString("NAME:\n   ")
	f.helpName(b, a.HelpName, a.Usage)
	b.WriteString("\n\nUSAGE:\n   ")
	if a.UsageText != "" {
		b.WriteString(f.wrap(a.UsageText, 3))
	} else {
		b.WriteString(a.HelpName)
		b.WriteString(" ")
		if len(a.VisibleFlags()) > 0 {
			b.WriteString("[global options]")
		}
		if len(a.Commands) > 0 {
			b.WriteString(" command [command options]")
		}
		f.argsUsage(b, a.ArgsUsage, a.Args)
	}
	if a.Version != "" && !a.HideVersion {
		b.WriteString("\n\nVERSION:\n   ")
		b.WriteString(a.Version)
	}
	if a.Description != "" {
		b.WriteString("\n\nDESCRIPTION:\n   ")
		b.WriteString(f.wrap(a.Description, 3)) // descriptionTemplate
	}
	// The template's "{{- if len .Authors}}" trims the newline before it.
	if len(a.Authors) > 0 {
		b.WriteString("\n\nAUTHOR")
		f.authors(b, a.Authors)
	}
	if len(a.VisibleCommands()) > 0 {
		b.WriteString("\n\nCOMMANDS:")
		f.commandCategories(b, a.VisibleCategories())
	}
	if cats := a.VisibleFlagCategories(); len(cats) > 0 {
		b.WriteString("\n\nGLOBAL OPTIONS:")
		f.flagCategories(b, cats)
	} else if flags := a.VisibleFlags(); len(flags) > 0 {
		b.WriteString("\n\nGLOBAL OPTIONS:")
		f.flags(b, flags)
	}
	if a.Copyright != "" {
		b.WriteString("\n\nCOPYRIGHT:\n   ")
		b.WriteString(f.wrap(a.Copyright, 3)) // copyrightTemplate
	}
	b.WriteString("\n")
}

// commandHelp is CommandHelpTemplate, or SubcommandHelpTemplate with
// subcommands true (the same but for its COMMANDS section).
func (f helpFuncs) commandHelp(b *strings.Builder, c *Command, subcommands bool) {
	b.WriteString("NAME:\n   ")
	f.helpName(b, c.HelpName, c.Usage)
	b.WriteString("\n\nUSAGE:\n   ")
	// usageTemplate
	if c.UsageText != "" {
		b.WriteString(f.wrap(c.UsageText, 3))
	} else {
		b.WriteString(c.HelpName)
		if len(c.VisibleFlags()) > 0 {
			b.WriteString(" [command options]")
		}
		f.argsUsage(b, c.ArgsUsage, c.Args)
	}
	if c.Category != "" {
		b.WriteString("\n\nCATEGORY:\n   ")
		b.WriteString(c.Category)
	}
	if c.Description != "" {
		b.WriteString("\n\nDESCRIPTION:\n   ")
		b.WriteString(f.wrap(c.Description, 3)) // descriptionTemplate
	}
	if subcommands && len(c.VisibleCommands()) > 0 {
		b.WriteString("\n\nCOMMANDS:")
		f.commandCategories(b, c.VisibleCategories())
	}
	if cats := c.VisibleFlagCategories(); len(cats) > 0 {
		b.WriteString("\n\nOPTIONS:")
		f.flagCategories(b, cats)
	} else if flags := c.VisibleFlags(); len(flags) > 0 {
		b.WriteString("\n\nOPTIONS:")
		f.flags(b, flags)
	}
	b.WriteString("\n")
}

// helpName is helpNameTemplate.
func (f helpFuncs) helpName(b *strings.Builder, helpName, usage string) {
	v := f.offset(helpName, 6)
	b.WriteString(f.wrap(helpName, 3))
	if usage != "" {
		b.WriteString(" - ")
		b.WriteString(f.wrap(usage, v))
	}
}

// argsUsage is the tail both usage lines share.
func (f helpFuncs) argsUsage(b *strings.Builder, argsUsage string, args bool) {
	if argsUsage != "" {
		b.WriteString(" ")
		b.WriteString(argsUsage)
	} else if args {
		b.WriteString(" [arguments...]")
	}
}

// authors is authorsTemplate. {{$author}} prints as fmt.Fprint does.
func (f helpFuncs) authors(b *strings.Builder, authors []*Author) {
	if len(authors) != 1 {
		b.WriteString("S")
	}
	b.WriteString(":\n   ")
	for i, author := range authors {
		if i > 0 {
			b.WriteString("\n   ")
		}
		fmt.Fprint(b, author)
	}
}

// commandCategories is visibleCommandCategoryTemplate.
func (f helpFuncs) commandCategories(b *strings.Builder, cats []CommandCategory) {
	for _, cat := range cats {
		if cat.Name() == "" {
			f.commands(b, cat.VisibleCommands())
			continue
		}
		b.WriteString("\n   ")
		b.WriteString(cat.Name())
		b.WriteString(":")
		for _, c := range cat.VisibleCommands() {
			b.WriteString("\n     ")
			b.WriteString(f.join(c.Names(), ", "))
			b.WriteString("\t")
			b.WriteString(c.Usage)
		}
	}
}

// commands is visibleCommandTemplate.
func (f helpFuncs) commands(b *strings.Builder, cmds []*Command) {
	cv := f.offsetCommands(cmds, 5)
	for _, c := range cmds {
		s := f.join(c.Names(), ", ")
		b.WriteString("\n   ")
		b.WriteString(s)
		b.WriteString(f.indent(f.subtract(cv, f.offset(s, 3)), ""))
		b.WriteString(f.wrap(c.Usage, cv))
	}
}

// flagCategories is visibleFlagCategoryTemplate. {{$e}} prints as
// fmt.Fprint does.
func (f helpFuncs) flagCategories(b *strings.Builder, cats []VisibleFlagCategory) {
	for _, cat := range cats {
		b.WriteString("\n   ")
		if cat.Name() != "" {
			b.WriteString(cat.Name())
			b.WriteString("\n\n   ")
		}
		flags := cat.Flags()
		for i, fl := range flags {
			fmt.Fprint(b, fl)
			if f.subtract(len(flags), i) == 1 {
				b.WriteString("\n")
			} else {
				b.WriteString("\n   ")
			}
		}
	}
}

// flags is visibleFlagTemplate.
func (f helpFuncs) flags(b *strings.Builder, flags []Flag) {
	for _, fl := range flags {
		b.WriteString("\n   ")
		b.WriteString(f.wrap(fl.String(), 6))
	}
}
