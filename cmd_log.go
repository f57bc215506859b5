package main

import (
	"io"
	"log/slog"

	"github.com/urfave/cli/v2"
)

func logFormatFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"AMBASSADOR_LOG_FORMAT"},
		Usage: "log `FORMAT`: text (logfmt key=value lines) or json (one JSON object per line, for journald or a log shipper)"}
}

// logHandler is slog's text or JSON handler on w. Either way there is one
// line per event; at the default level (info) nothing is logged per
// connection (see the house style: per-connection lines are Debug).
func logHandler(w io.Writer, format string, lvl slog.Level) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text", "":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, usagef("--log-format: %q is not one of text, json", format)
}

func newLogger(c *cli.Context) (*slog.Logger, error) {
	return newLoggerFrom(c, c)
}

// newLoggerFrom reads --log-level from src (the command line, or the
// command line over the --config file) and logs to c's stderr.
func newLoggerFrom(c *cli.Context, src source) (*slog.Logger, error) {
	lvl, err := logLevel(src)
	if err != nil {
		return nil, err
	}
	h, err := logHandler(c.App.ErrWriter, src.String("log-format"), lvl)
	if err != nil {
		return nil, err
	}
	l := slog.New(h)
	slog.SetDefault(l)
	return l, nil
}

// logLevel is --log-level from src, checked.
func logLevel(src source) (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(src.String("log-level"))); err != nil {
		return lvl, usagef("--log-level: %q is not one of debug, info, warn, error", src.String("log-level"))
	}
	return lvl, nil
}

// checkLogSettings checks --log-level and --log-format in src without
// making a logger: a reload takes neither (they are start-only), but a
// file with a bad one would stop the node at its next start, so the
// reload refuses it whole.
func checkLogSettings(src source) error {
	lvl, err := logLevel(src)
	if err != nil {
		return err
	}
	_, err = logHandler(io.Discard, src.String("log-format"), lvl)
	return err
}
