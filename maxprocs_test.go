package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestProcsGovernorSteps drives the governor through a run of polls: the
// counters it reads and the GOMAXPROCS it must have set after each, with
// the collector's pace following it (idleGOGC at 1, steadyGOGC above).
func TestProcsGovernorSteps(t *testing.T) {
	type poll struct {
		after          time.Duration // since the previous poll
		accepted, open uint64
		want           int
	}
	for _, c := range []struct {
		name  string
		polls []poll
	}{
		{"idle stays at one", []poll{{5 * time.Second, 0, 0, 1}, {time.Hour, 0, 0, 1}}},
		{"an open connection raises it", []poll{{5 * time.Second, 1, 1, 4}}},
		{"a connection opened and closed between polls raises it", []poll{{5 * time.Second, 3, 0, 4}}},
		{"lowered once polls saw no connection for procsQuiet", []poll{
			{5 * time.Second, 1, 1, 4},
			{5 * time.Second, 1, 0, 4}, // the first quiet poll
			{procsQuiet - time.Second, 1, 0, 4},
			{time.Second, 1, 0, 1},
			{time.Hour, 1, 0, 1},
		}},
		{"a long connection keeps it raised", []poll{
			{5 * time.Second, 1, 1, 4},
			{time.Hour, 1, 1, 4},
			{5 * time.Second, 1, 0, 4}, // closed: the quiet time starts here, not at the last busy poll
			{5 * time.Second, 1, 0, 4},
			{procsQuiet, 1, 0, 1},
		}},
		{"not lowered before the start is over", []poll{ // at full, the start ends at 2 min
			{5 * time.Second, 0, 0, 4},
			{procsQuiet, 0, 0, 4}, // quiet long enough, but still starting
			{time.Minute, 0, 0, 4},
			{30 * time.Second, 0, 0, 1},
		}},
		{"new connections restart the quiet time", []poll{
			{5 * time.Second, 1, 0, 4},
			{5 * time.Second, 1, 0, 4},
			{procsQuiet - time.Second, 2, 0, 4},
			{procsQuiet - time.Second, 2, 0, 4},
			{time.Second, 2, 0, 4},
			{procsQuiet, 2, 0, 1},
			{5 * time.Second, 3, 0, 4},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var accepted, open uint64
			procs := 1
			var sets int
			gogc := 0 // never set
			g := &procsGovernor{
				full:     4,
				activity: func() (uint64, uint64) { return accepted, open },
				set:      func(n int) int { old := procs; procs = n; sets++; return old },
				setGC:    func(n int) int { old := gogc; gogc = n; return old },
				log:      slog.New(slog.DiscardHandler),
				cur:      1,
			}
			now := time.Unix(1e9, 0)
			if c.name == "not lowered before the start is over" {
				g.cur, procs = 4, 4
				g.notBefore = now.Add(2 * time.Minute)
			}
			for i, p := range c.polls {
				now = now.Add(p.after)
				accepted, open = p.accepted, p.open
				before := sets
				g.step(now)
				if procs != p.want {
					t.Fatalf("poll %d (%+v): GOMAXPROCS %d, want %d", i, p, procs, p.want)
				}
				if i > 0 && p.want == c.polls[i-1].want && sets != before {
					t.Errorf("poll %d: GOMAXPROCS set again to the same %d (a stop-the-world for nothing)", i, procs)
				}
				if sets > 0 {
					want := steadyGOGC
					if procs == 1 {
						want = idleGOGC
					}
					if gogc != want {
						t.Fatalf("poll %d (%+v): GOGC %d at GOMAXPROCS %d, want %d", i, p, gogc, procs, want)
					}
				}
			}
		})
	}
}

// TestProcsGovernorLogPinned: with GOMAXPROCS pinned by the user the
// governor still paces the collector, and its debug line must not claim
// a GOMAXPROCS it never set (it said "procs 1" on a pinned node).
func TestProcsGovernorLogPinned(t *testing.T) {
	for _, c := range []struct {
		pinned bool
		want   string // the message of the line logged when the node goes idle
	}{
		{false, "GOMAXPROCS set"},
		{true, "collector pace set"},
	} {
		var got []string
		h := recordHandler(func(r slog.Record) {
			s := r.Message
			r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
			got = append(got, s)
		})
		g := &procsGovernor{full: 2, cur: 2, pinned: c.pinned, set: func(int) int { return 0 }, log: slog.New(h)}
		g.to(1)
		if len(got) != 1 || !strings.HasPrefix(got[0], c.want) || (c.pinned && strings.Contains(got[0], "procs")) {
			t.Errorf("pinned %v: logged %q, want one line %q without a procs figure when pinned", c.pinned, got, c.want)
		}
	}
}

// recordHandler is a slog.Handler that hands every record to a func.
type recordHandler func(slog.Record)

func (h recordHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error { h(r); return nil }
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h recordHandler) WithGroup(string) slog.Handler                 { return h }
