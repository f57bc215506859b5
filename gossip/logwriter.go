package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// logWriter turns memberlist's "[LEVEL] memberlist: message" lines into
// slog records at the matching level, the way serf's agent filters them.
// log.Logger calls Write once per line and serializes the calls.
type logWriter struct {
	log *slog.Logger
}

// newStdLogger returns a *log.Logger for memberlist that writes into l.
// No flags: slog adds its own time.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(logWriter{log: l.With("lib", "memberlist")}, "", 0)
}

var logLevels = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[TRACE]"), slog.LevelDebug},
	{[]byte("[DEBUG]"), slog.LevelDebug},
	{[]byte("[INFO]"), slog.LevelInfo},
	{[]byte("[WARN]"), slog.LevelWarn},
	{[]byte("[ERR]"), slog.LevelError},
	{[]byte("[ERROR]"), slog.LevelError},
}

// parseLogLine splits a memberlist log line into a level and a message.
// Lines without a known prefix are logged at Info.
func parseLogLine(p []byte) (slog.Level, string) {
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, l := range logLevels {
		if rest, ok := bytes.CutPrefix(line, l.prefix); ok {
			level, line = l.level, bytes.TrimSpace(rest)
			break
		}
	}
	line, _ = bytes.CutPrefix(line, []byte("memberlist: "))
	return level, string(line)
}

func (w logWriter) Write(p []byte) (int, error) {
	ctx := context.Background()
	level, msg := parseLogLine(p)
	if w.log.Enabled(ctx, level) {
		w.log.Log(ctx, level, msg)
	}
	return len(p), nil
}
