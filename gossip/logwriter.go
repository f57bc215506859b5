package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// logInterval is how often one kind of repeated Warn or Error line is
// logged; repeats in between are counted and reported with the next one.
const logInterval = 10 * time.Second

// maxLogKeys bounds the keys a limiter tracks. Keys of memberlist lines can
// contain peer names, so a hostile or broken cluster could otherwise grow
// the map without bound; past the limit all new keys share one budget.
const maxLogKeys = 256

// maxLogKeyLen bounds a key taken from a log message.
const maxLogKeyLen = 64

// logWriter turns memberlist's "[LEVEL] memberlist: message" lines into
// slog records, the way serf's agent filters them. log.Logger calls Write
// once per line and serializes the calls.
//
// memberlist logs [ERR] for conditions caused by the network or by peers
// dying routinely (a failed ping or push/pull, a malformed packet), which
// recover on their own, so [ERR] becomes Warn. Those lines can repeat for
// every packet, so lines at Warn are rate limited per message prefix.
type logWriter struct {
	log   *slog.Logger
	limit *limiter
	now   func() time.Time
}

// newStdLogger returns a *log.Logger for memberlist that writes into l.
// No flags: slog adds its own time.
func newStdLogger(l *slog.Logger) *log.Logger {
	w := logWriter{log: l.With("lib", "memberlist"), limit: newLimiter(logInterval), now: time.Now}
	return log.New(w, "", 0)
}

var logLevels = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[TRACE]"), slog.LevelDebug},
	{[]byte("[DEBUG]"), slog.LevelDebug},
	{[]byte("[INFO]"), slog.LevelInfo},
	{[]byte("[WARN]"), slog.LevelWarn},
	{[]byte("[ERR]"), slog.LevelWarn},
	{[]byte("[ERROR]"), slog.LevelWarn},
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

// logKey returns the part of a memberlist message that names the kind of
// event: the text before the first ": " (which precedes the error) or
// " from=" (the peer address), at most maxLogKeyLen bytes.
func logKey(msg string) string {
	for _, sep := range []string{": ", " from="} {
		if i := strings.Index(msg, sep); i >= 0 {
			msg = msg[:i]
		}
	}
	if len(msg) > maxLogKeyLen {
		msg = msg[:maxLogKeyLen]
	}
	return msg
}

func (w logWriter) Write(p []byte) (int, error) {
	ctx := context.Background()
	level, msg := parseLogLine(p)
	if !w.log.Enabled(ctx, level) {
		return len(p), nil
	}
	if level < slog.LevelWarn {
		w.log.Log(ctx, level, msg)
		return len(p), nil
	}
	if ok, suppressed := w.limit.allow(logKey(msg), w.now()); ok {
		if suppressed > 0 {
			w.log.Log(ctx, level, msg, "suppressed", suppressed)
		} else {
			w.log.Log(ctx, level, msg)
		}
	}
	return len(p), nil
}

// limiter allows one event per key per interval and counts the others. It
// is safe for concurrent use.
type limiter struct {
	interval time.Duration // set in newLimiter, read-only afterwards

	mu   sync.Mutex
	keys map[string]*logWindow // guarded by mu; at most maxLogKeys+1
}

type logWindow struct {
	start      time.Time // when the last allowed event happened
	suppressed int       // events since start that were not allowed
}

func newLimiter(interval time.Duration) *limiter {
	return &limiter{interval: interval, keys: make(map[string]*logWindow)}
}

// allow reports whether an event for key at now may be logged and, if so,
// how many events for key were suppressed since the last one allowed.
// Counts of keys idle for an interval may be dropped when the map is full.
func (l *limiter) allow(key string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.keys[key]
	if !ok {
		if len(l.keys) >= maxLogKeys {
			for k, w := range l.keys {
				if now.Sub(w.start) >= l.interval {
					delete(l.keys, k)
				}
			}
		}
		if len(l.keys) >= maxLogKeys {
			// Still full: share the overflow key's budget.
			key = ""
			w, ok = l.keys[key]
		}
		if !ok {
			l.keys[key] = &logWindow{start: now}
			return true, 0
		}
	}
	if now.Sub(w.start) < l.interval {
		w.suppressed++
		return false, 0
	}
	n := w.suppressed
	*w = logWindow{start: now}
	return true, n
}
