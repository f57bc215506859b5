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
