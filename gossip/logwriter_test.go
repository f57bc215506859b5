package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recorder) WithGroup(string) slog.Handler            { return h }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// lines returns "LEVEL message suppressed=N" per record.
func (h *recorder) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		line := r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "suppressed" {
				line += " suppressed=" + a.Value.String()
			}
			return true
		})
		out = append(out, line)
	}
	return out
}

func TestLogWriterRateLimit(t *testing.T) {
	h := &recorder{}
	now := time.Unix(1000, 0)
	w := logWriter{log: slog.New(h), limit: newLimiter(logInterval), now: func() time.Time { return now }}
	write := func(line string) {
		t.Helper()
		if _, err := w.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	const ping = "[ERR] memberlist: Failed to send ping: write udp 1.2.3.4:5: i/o timeout"
	write(ping)
	write(ping)
	write("[ERR] memberlist: Failed to send ping: connection refused")
	write("[ERR] memberlist: Push/Pull with b failed: EOF")
	write("[DEBUG] memberlist: Stream connection from=1.2.3.4:5")
	write("[DEBUG] memberlist: Stream connection from=1.2.3.4:5")
	now = now.Add(logInterval)
	write(ping)
	write(ping)
	now = now.Add(logInterval)
	write(ping)

	want := []string{
		"WARN Failed to send ping: write udp 1.2.3.4:5: i/o timeout",
		"WARN Push/Pull with b failed: EOF",
		"DEBUG Stream connection from=1.2.3.4:5",
		"DEBUG Stream connection from=1.2.3.4:5",
		"WARN Failed to send ping: write udp 1.2.3.4:5: i/o timeout suppressed=2",
		"WARN Failed to send ping: write udp 1.2.3.4:5: i/o timeout suppressed=1",
	}
	got := h.lines()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logged:\ngot  %q\nwant %q", got, want)
	}
}

func TestLogKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Failed to send ping: write udp 1.2.3.4:5: i/o timeout", "Failed to send ping"},
		{"Received invalid msgType (9) from=1.2.3.4:5", "Received invalid msgType (9)"},
		{"Conflicting address for b. Mine: 1.2.3.4:5 Theirs: 1.2.3.5:5", "Conflicting address for b. Mine"},
		{"no separator", "no separator"},
		{string(make([]byte, 100)), string(make([]byte, maxLogKeyLen))},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := logKey(tc.in); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLimiterBounded(t *testing.T) {
	l := newLimiter(logInterval)
	now := time.Unix(1000, 0)
	for i := range maxLogKeys {
		if ok, _ := l.allow(fmt.Sprint(i), now); !ok {
			t.Fatalf("first event of key %d: not allowed", i)
		}
	}
	// Full: new keys share one budget.
	if ok, _ := l.allow("new-1", now); !ok {
		t.Error("first key beyond the limit: not allowed")
	}
	if ok, _ := l.allow("new-2", now); ok {
		t.Error("second key beyond the limit: allowed, want it to share the first one's budget")
	}
	if got := len(l.keys); got > maxLogKeys+1 {
		t.Errorf("keys: got %d, want at most %d", got, maxLogKeys+1)
	}
	// Once the old keys are idle for an interval they make room.
	now = now.Add(logInterval)
	if ok, n := l.allow("new-3", now); !ok || n != 0 {
		t.Errorf("new key after an interval: got %v, %d; want true, 0", ok, n)
	}
	if got := len(l.keys); got > 2 {
		t.Errorf("keys after idle ones expired: got %d, want at most 2", got)
	}
}

func TestLocalStateOversizeLoggedOnce(t *testing.T) {
	h := &recorder{}
	c, err := New(Config{NodeName: "a", BindAddr: "127.0.0.1", Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	d := &delegate{c: c}
	var svcs []Service
	for i := range maxServices {
		svcs = append(svcs, Service{Name: svcname.Must(fmt.Sprintf("s%014d", i)), Port: 1 + i})
	}
	// Enough nodes to exceed maxStateMsg, each record valid on its own.
	per := len(mustEncodeRecord(t, record{Entry: Entry{Node: "n000", Addr: "10.0.0.9", Version: 1, Services: svcs}}))
	for i := range maxStateMsg/per + 1 {
		name := fmt.Sprintf("n%03d", i)
		d.NotifyJoin(mlNode(name, "10.0.0.9", 0))
		c.merge([]record{{Entry: Entry{Node: name, Addr: "10.0.0.9", Version: 1, Services: svcs}}}, false)
	}
	for range 3 {
		if b := d.LocalState(false); len(b) <= maxStateMsg {
			t.Fatalf("LocalState: got %d bytes, want more than %d", len(b), maxStateMsg)
		}
	}
	n := 0
	for _, l := range h.lines() {
		if strings.HasPrefix(l, "ERROR ") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("Error lines after 3 oversized push/pulls: got %d, want 1; lines: %q", n, h.lines())
	}
}
