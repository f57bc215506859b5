package gossip

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// warnLog keeps the messages of the Warn (and louder) lines logged to it.
type warnLog struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnLog) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}
func (w *warnLog) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnLog) WithGroup(string) slog.Handler      { return w }

func (w *warnLog) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// TestClockBehindWarns: a node whose clock is more than maxVersionAhead
// behind its peers' (a board without a real-time clock before NTP) drops
// every record they send, as too far ahead, and so sees no catalog. That
// is network input, so one bad record is logged at Debug only; but this
// cause is on this node, and the operator must be told at Warn, once per
// interval, not left with an empty catalog and nothing said.
func TestClockBehindWarns(t *testing.T) {
	ahead := uint64(time.Now().Add(2 * maxVersionAhead).UnixNano())
	rec := record{Entry: Entry{Node: "b", Addr: "10.0.0.2", Version: ahead, Services: []Service{{Name: "web", Port: 80}}}}
	bcast, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	state, err := encodeState([]record{rec})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		feed func(d *delegate)
	}{
		{"broadcast", func(d *delegate) { d.NotifyMsg(bcast) }},
		{"push/pull", func(d *delegate) { d.MergeRemoteState(state, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &warnLog{}
			c, err := New(Config{NodeName: "a", BindAddr: "127.0.0.1", Logger: slog.New(w)})
			if err != nil {
				t.Fatal(err)
			}
			d := &delegate{c: c}
			for range 3 {
				tc.feed(d)
			}
			var clock []string
			for _, l := range w.lines() {
				if strings.Contains(l, "clock") {
					clock = append(clock, l)
				}
			}
			if len(clock) != 1 {
				t.Errorf("Warn lines about the clock: got %q, want one (all lines %q)", clock, w.lines())
			}
		})
	}
}
