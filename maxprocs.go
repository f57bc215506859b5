package main

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// An idle node runs with GOMAXPROCS 1 and a busy one with every CPU it
// started with. An idle node's work is a few timers a second (gossip,
// probes); with a second P each of them also wakes a spinning thread that
// finds nothing to do: GOMAXPROCS 1 took a quarter off an idle node's CPU
// (0.13 -> 0.10 % of a core, two-node pairs side by side) and 0.25 MiB
// of RssAnon (issue 10). Connections raise it again within a poll.
const (
	procsPoll  = 5 * time.Second  // how often the data plane's counters are read
	procsQuiet = 30 * time.Second // no connection for this long: back to 1
)

// idleGOGC is the collector's pace while the governor finds the node idle
// (steadyGOGC otherwise). An idle node allocates 10-20 KB/s (gossip,
// probes) over a live heap of 0.5-1.1 MB; between two collections its heap
// grows back to the goal, and every page it grows into stays resident.
// GOGC=50 puts the goal at the runtime's floor of 4 MiB x GOGC/100 = 2 MiB;
// below GOGC 20 nothing more is gained, because the runtime keeps the next
// trigger at least 1 MiB above the live heap (its minimum sweep distance):
// GOGC 10 and 20 both gave a 1.45 MiB goal over 0.46 MB live, GOGC 50
// 2 MiB. A collection of a heap this small takes 1-2 ms of CPU, and with
// 1 MiB of room at 15-20 KB/s one comes about every minute (issue 10).
const idleGOGC = 20

// governProcs is set by main when GOMAXPROCS is not in the environment:
// only then, and only in the real process (not a test calling run), does a
// node govern it.
var governProcs bool

// procsGovernor decides GOMAXPROCS from the data plane's counters.
type procsGovernor struct {
	full     int                            // GOMAXPROCS the process started with
	activity func() (accepted, open uint64) // mesh.Node.Activity
	set      func(int) int                  // runtime.GOMAXPROCS; a seam for tests
	setGC    func(int) int                  // debug.SetGCPercent, nil when GOGC is the user's; a seam for tests
	pinned   bool                           // GOMAXPROCS is the user's (or one CPU): set does nothing, only the log says so
	log      *slog.Logger

	cur        int
	accepted   uint64
	quietSince time.Time // first poll of the current run that saw no connection; zero while busy
	notBefore  time.Time // the end of the node's start: not lowered before
}

// step reads the counters at now and sets GOMAXPROCS: full while a
// connection is open or one came since the last step, 1 once polls have
// seen none for procsQuiet.
func (g *procsGovernor) step(now time.Time) {
	accepted, open := g.activity()
	busy := open > 0 || accepted != g.accepted
	g.accepted = accepted
	switch {
	case busy:
		g.quietSince = time.Time{}
		if g.cur != g.full {
			g.to(g.full)
		}
	case g.quietSince.IsZero():
		g.quietSince = now
	case g.cur != 1 && now.Sub(g.quietSince) >= procsQuiet && !now.Before(g.notBefore):
		g.to(1)
	}
}

func (g *procsGovernor) to(n int) {
	g.set(n)
	g.cur = n
	gc := steadyGOGC
	if n == 1 {
		gc = idleGOGC
	}
	if g.setGC != nil {
		g.setGC(gc)
	}
	if g.pinned {
		// A debug line saying "procs 1" here misled a reader of a node
		// started with GOMAXPROCS set into thinking it ran on one CPU.
		g.log.Debug("collector pace set", "idle", n == 1, "gogc", gc)
		return
	}
	g.log.Debug("GOMAXPROCS set", "procs", n, "gogc", gc)
}

// startProcsGovernor runs the governor until ctx ends or the returned stop
// is called; stop waits for it and gives back every CPU (connections may
// still be draining). The node keeps every CPU for its first
// startGCWindow, where it is busy (joins, push/pull, mDNS answers): with
// GOMAXPROCS 1 from the first instant, 100-host lab starts were not shown
// to be as fast (first connection 6.3 and 6.4 s after the last exec, one
// run each in sessions 7 and 8; main gave 6.0 s in the same hour), so the
// start stays as it was. GOMAXPROCS is left alone unless governProcs and
// the process has more than one CPU; the collector's pace (idleGOGC) only
// when tuneGC. The first lowering comes procsPoll+procsQuiet after the
// start at the earliest, so after startGC has ended its window (it
// started first): the two never race for GOGC.
func startProcsGovernor(ctx context.Context, activity func() (uint64, uint64), log *slog.Logger) (stop func()) {
	full := runtime.GOMAXPROCS(0)
	procs := governProcs && full > 1
	if !procs && !tuneGC {
		return func() {}
	}
	if !procs {
		// Only the collector is governed: the idle state still moves
		// between full and 1, GOMAXPROCS does not.
		full = max(full, 2)
	}
	g := &procsGovernor{full: full, activity: activity, set: runtime.GOMAXPROCS, log: log, cur: full,
		notBefore: time.Now().Add(startGCWindow)}
	if !procs {
		g.set, g.pinned = func(int) int { return 0 }, true
	}
	if tuneGC {
		g.setGC = debug.SetGCPercent
	}
	g.accepted, _ = activity()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(procsPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				g.step(now)
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		g.to(full)
	}
}
