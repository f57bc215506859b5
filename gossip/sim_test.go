package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// simNode is one Cluster on a simNet.
type simNode struct {
	c *Cluster
	t *simTransport
}

func startSimNode(tb testing.TB, sn *simNet, i int) simNode {
	tb.Helper()
	return startSimNodeWith(tb, sn, i, DefaultConfig()) // the production LAN profile
}

func startSimNodeWith(tb testing.TB, sn *simNet, i int, cfg Config) simNode {
	tb.Helper()
	return startSimNodeLog(tb, sn, i, cfg, slog.New(slog.DiscardHandler))
}

func startSimNodeLog(tb testing.TB, sn *simNet, i int, cfg Config, log *slog.Logger) simNode {
	tb.Helper()
	tr := sn.newTransport(tb)
	cfg.NodeName = fmt.Sprintf("n%04d", i)
	cfg.AdvertiseAddr = "127.0.0.1"
	cfg.BindPort = tr.port
	cfg.DataPort = 7947
	cfg.Memberlist.Transport = tr
	cfg.Logger = log
	c, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Start(); err != nil {
		tb.Fatal(err)
	}
	c.SetServices([]Service{{Name: svcname.Must("svc" + strconv.Itoa(i%10)), Port: 7000 + i%10}})
	tb.Cleanup(func() { _ = c.Shutdown() })
	return simNode{c: c, t: tr}
}

// simPoll is how often waitAll and waitSpread look at every node.
const simPoll = 20 * time.Millisecond

// waitAll polls until every node in nodes satisfies ok, or timeout; it
// returns how long that took and whether it happened.
func waitAll(nodes []simNode, timeout time.Duration, ok func(simNode) bool) (time.Duration, bool) {
	_, all, done := waitSpread(nodes, timeout, ok)
	return all, done
}

// waitSpread polls until every node in nodes satisfies ok, or timeout. It
// returns when the first node did (or -1), when the last did (or the time
// waited) and whether all did. A node counts once it satisfied ok at one
// poll; the polls are simPoll apart, so both times are late by up to that.
func waitSpread(nodes []simNode, timeout time.Duration, ok func(simNode) bool) (first, all time.Duration, done bool) {
	s := waitSpreads(nodes, timeout, ok)
	return s[0].first, s[0].all, s[0].done
}

// spread is how one condition spread over the nodes: when the first node
// met it (-1: none), when the last did (or the time waited) and whether
// all did.
type spread struct {
	first, all time.Duration
	done       bool
}

// waitSpreads is waitSpread for several conditions at once, timed from
// one start: it polls until every node met every condition or timeout.
// The polls only read an atomic or take one node's mutex for a map
// lookup (Alive, NumMembers, simHidden), so 1,000 nodes cost about a
// millisecond of CPU per poll.
func waitSpreads(nodes []simNode, timeout time.Duration, conds ...func(simNode) bool) []spread {
	start := time.Now()
	out := make([]spread, len(conds))
	seen := make([][]bool, len(conds))
	left := make([]int, len(conds))
	for k := range conds {
		out[k].first = -1
		seen[k] = make([]bool, len(nodes))
		left[k] = len(nodes)
	}
	for {
		pending := 0
		for k, ok := range conds {
			if left[k] == 0 {
				continue
			}
			for i, n := range nodes {
				if !seen[k][i] && ok(n) {
					seen[k][i] = true
					left[k]--
					if out[k].first < 0 {
						out[k].first = time.Since(start)
					}
				}
			}
			if left[k] == 0 {
				out[k].all, out[k].done = time.Since(start), true
			}
			pending += left[k]
		}
		if pending == 0 {
			return out
		}
		if time.Since(start) > timeout {
			for k := range out {
				if !out[k].done {
					out[k].all = time.Since(start)
				}
			}
			return out
		}
		time.Sleep(simPoll) // polling a condition, not synchronising
	}
}

// simHidden reports whether c's catalog leaves out node name's services:
// exactly the test Catalog applies (not an alive member, or a suspect
// whose gossip port refused), without Catalog's copy of every record,
// which polling 1,000 nodes every simPoll could not afford.
func simHidden(c *Cluster, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[name]
	return !ok || m.State != stateAlive || m.refused
}

// simSizes is the cluster sizes TestSimScale runs: AMB_SIM_SIZES (comma
// separated), else 10, which CI runs under -race in seconds. Larger sizes
// take minutes and all of two cores (go tool -modfile=tools/go.mod task
// sim runs 10,100,1000 under /tmp/amb-heavy.lock).
func simSizes(t *testing.T) []int {
	v := os.Getenv("AMB_SIM_SIZES")
	if v == "" {
		return []int{10}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 3 || n > 5000 {
			t.Fatalf("AMB_SIM_SIZES=%q: want sizes 3..5000", v)
		}
		out = append(out, n)
	}
	return out
}

// simProfiles are the gossip configurations TestSimScale can run, by the
// name AMB_SIM_PROFILE gives (comma separated; default "lan").
var simProfiles = map[string]func() Config{
	// What the product runs: DefaultConfig, memberlist's LAN timers with
	// Lifeguard (probe 1s/500ms, suspicion multiplier 4).
	"lan": DefaultConfig,
	// Not the product's: timers that would let a failure reach every
	// node of 1,000 within 5s. memberlist's minimum suspicion timeout is
	// SuspicionMult × log10(N) × ProbeInterval (12s at 1,000 nodes with
	// the LAN timers); with a probe every 200ms it is 2.4s, leaving about
	// 2.5s for the probe that finds the failure and for the dead message
	// to spread. Probing 5 times as often costs 5 times the probe traffic
	// and wake-ups, and a 100ms probe timeout is what made a busy 100-host
	// lab mark live hosts failed (issue 10).
	"fast": func() Config {
		cfg := DefaultConfig()
		cfg.Memberlist.ProbeInterval = 200 * time.Millisecond
		cfg.Memberlist.ProbeTimeout = 100 * time.Millisecond
		return cfg
	},
}

func simProfileNames(t *testing.T) []string {
	v := os.Getenv("AMB_SIM_PROFILE")
	if v == "" {
		return []string{"lan"}
	}
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if simProfiles[f] == nil {
			t.Fatalf("AMB_SIM_PROFILE=%q: unknown profile %q (want lan or fast)", v, f)
		}
		out = append(out, f)
	}
	return out
}

// simEnvDuration reads a duration from the environment, else def.
func simEnvDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// simDilate is the simulation's time dilation K (AMB_SIM_DILATE, default
// 1): every time-valued field of the memberlist config (and so every
// product timer derived from it) and every wait of the harness is K times
// longer, and every measured duration is divided by K and every rate
// multiplied by K when reported. Nodes then do K times less work per
// second of wall time, which models N nodes each with a core of its own
// (as on a LAN) on a machine with too few cores for N at full speed. The
// network's and the kernel's latencies and the CPU cost of a message
// are not dilated: relative to the timers they are K times smaller.
func simDilate(t testing.TB) float64 {
	v := os.Getenv("AMB_SIM_DILATE")
	if v == "" {
		return 1
	}
	k, err := strconv.ParseFloat(v, 64)
	if err != nil || k < 1 || k > 100 {
		t.Fatalf("AMB_SIM_DILATE=%q: want a factor in [1, 100]", v)
	}
	return k
}

// dilated returns d × k.
func dilated(d time.Duration, k float64) time.Duration {
	return time.Duration(float64(d) * k)
}

// simDilateConfig multiplies every time.Duration field of cfg's
// memberlist config by k (TCPTimeout, PushPullInterval, ProbeInterval,
// ProbeTimeout, GossipInterval, GossipToTheDeadTime, DeadNodeReclaimTime,
// QueueCheckInterval in v0.7.0), found by reflection so that a field a
// later memberlist adds is not missed. gossip's own timers that derive
// from these (scanEvery, refusedGrace, the confirm dial's timeout, the
// reap time, DeadNodeReclaimTime) follow. The wall-clock constants of
// gossip/*.go that do not follow are listed in docs/simulation.md.
func simDilateConfig(cfg Config, k float64) Config {
	mc := *cfg.Memberlist
	v := reflect.ValueOf(&mc).Elem()
	durType := reflect.TypeFor[time.Duration]()
	for i := range v.NumField() {
		if f := v.Field(i); f.Type() == durType && f.CanSet() {
			f.SetInt(int64(dilated(time.Duration(f.Int()), k)))
		}
	}
	cfg.Memberlist = &mc
	return cfg
}

// Targets of issue 10 for the simulation.
const (
	simSpreadTarget = 5 * time.Second // a join and a failure reach every node
	simBytesTarget  = 10_000          // gossip bytes sent per node per second
)

// TestSimScale simulates clusters of N nodes in one process: gossip
// Clusters (the product's code and config, memberlist included) over
// simNet, no sockets. For each size it builds the cluster, lets it settle,
// and then measures, printing FIGURE lines and a Markdown table row:
//
//   - idle gossip: bytes each node sends per second (packets and streams),
//   - a join: a new node joins one member; how long until every node lists
//     it alive,
//   - a failure: a node is cut off without a goodbye (as by SIGKILL); how
//     long until the first and until every other node no longer lists it
//     alive,
//   - the process's CPU use in each phase, in cores of runtime.NumCPU,
//     because all nodes share the machine: near 100 % of every core, a
//     figure measures starvation as much as gossip,
//   - live nodes some node marked failed (false positives).
//
// It fails when a join takes longer than the 5s to reach every
// node, when a failure does not reach every node within the longest
// suspicion timeout the profile allows (the 5s target for failures is
// printed as met or missed: the LAN timers cannot meet it, see
// simProfiles), or when a node sends more than 10 KB/s while idle.
func TestSimScale(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation skipped in -short mode")
	}
	var rows []string
	for _, p := range simProfileNames(t) {
		for _, n := range simSizes(t) {
			t.Run(p+"/"+strconv.Itoa(n), func(t *testing.T) {
				rows = append(rows, simScale(t, n, p))
			})
		}
	}
	if len(rows) > 0 {
		t.Log("curve (Markdown):\n" + simTableHead + strings.Join(rows, "\n"))
	}
}

const simTableHead = "| nodes | profile | dilation K | join everywhere | failure, catalog hides it: first / every node | failure, memberlist declares it dead: first / every node | idle gossip per node, B/s (busiest node) | with push/pull, B/s per node | process CPU idle / join / failure, % of all cores | packets dropped | live nodes marked failed | live members hidden as refused |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|\n"

// simCluster is a built simulation.
type simCluster struct {
	net   *simNet
	nodes []simNode
	log   *failureLog
	cfg   func() Config // the profile, dilated
	k     float64       // time dilation, see simDilate
	next  int           // index of the next node started

	retries     int           // joins retried while building
	calmWait    time.Duration // waited for the CPU to calm down while building
	lateBatches int           // batches not listed by every node within simSpreadTarget
}

// logMissing logs, for every node that does not list want members, which
// ones it lacks and whether memberlist itself lacks them.
func (sc *simCluster) logMissing(t *testing.T, want int) {
	for _, nd := range sc.nodes {
		if nd.c.NumMembers() == want {
			continue
		}
		have := make(map[string]bool)
		for _, m := range nd.c.Members() {
			have[m.Name] = m.State == stateAlive
		}
		inML := make(map[string]bool)
		for _, m := range nd.c.ml.Members() {
			inML[m.Name] = true
		}
		var missing []string
		for _, o := range sc.nodes {
			if name := o.c.LocalNode(); !have[name] {
				missing = append(missing, fmt.Sprintf("%s (memberlist knows it: %v)", name, inML[name]))
			}
		}
		t.Logf("after %s: %s lists %d of %d, missing %v", simSpreadTarget, nd.c.LocalNode(), nd.c.NumMembers(), want, missing)
	}
}

func (sc *simCluster) start(t *testing.T) simNode {
	nd := startSimNodeLog(t, sc.net, sc.next, sc.cfg(), slog.New(sc.log.node(fmt.Sprintf("n%04d", sc.next))))
	sc.next++
	return nd
}

// simBatch is how many nodes join the cluster at once while it is built
// (AMB_SIM_BATCH, default 10): each joins a random member, and the batch
// must be listed by every node before the next one starts. A new node's
// alive message and record are each sent RetransmitMult×log10(N) times by
// every node (12 at 1,000 nodes), so a batch of b costs about 24×b×N
// messages within a second or two. At 1,000 nodes a batch of 50 kept two
// shared cores so busy that probes waited past their 500ms timeout: live
// nodes were marked failed by the hundred and the cluster did not
// converge in two minutes (at 151 nodes). The build is not what is
// measured; it only has to reach a stable cluster.
func simBatch(t *testing.T) int {
	v := os.Getenv("AMB_SIM_BATCH")
	if v == "" {
		return 10
	}
	b, err := strconv.Atoi(v)
	if err != nil || b < 1 {
		t.Fatalf("AMB_SIM_BATCH=%q: want a positive integer", v)
	}
	return b
}

// build starts n nodes and joins them in batches of simBatch until every
// node lists all n. It returns how long that took.
func (sc *simCluster) build(t *testing.T, n int, rng *rand.Rand) time.Duration {
	start := time.Now()
	cpu := startCPU()
	sc.nodes = append(sc.nodes, sc.start(t))
	size := simBatch(t)
	calmAt := simCalmPercent(t)
	for len(sc.nodes) < n {
		members := sc.nodes
		batch := make([]simNode, min(size, n-len(sc.nodes)))
		peers := make([][5]string, len(batch)) // a member to join, and four for retries
		for i := range batch {
			batch[i] = sc.start(t)
			for j := range peers[i] {
				peers[i][j] = members[rng.IntN(len(members))].t.addr
			}
		}
		// A join that fails (its push/pull timed out on a busy core) is
		// retried with another member, as mesh retries discovered peers.
		var wg sync.WaitGroup
		errs := make([]error, len(batch))
		tries := make([]int, len(batch))
		for i, nd := range batch {
			wg.Go(func() {
				var all []error
				for _, p := range peers[i] {
					tries[i]++
					_, err := nd.c.Join([]string{p})
					if err == nil {
						return
					}
					all = append(all, fmt.Errorf("%s: %w", time.Now().UTC().Format("15:04:05.000"), err))
					time.Sleep(dilated(time.Second, sc.k)) // a pause before the next member, not synchronising
				}
				errs[i] = errors.Join(all...)
			})
		}
		bs := time.Now()
		wg.Wait()
		joined := time.Since(bs)
		for i, err := range errs {
			sc.retries += tries[i] - 1
			if err != nil {
				t.Fatalf("building %d nodes: node %s, %d tries: %v", n, batch[i].c.LocalNode(), tries[i], err)
			}
		}
		sc.nodes = append(sc.nodes, batch...)
		want := len(sc.nodes)
		// memberlist sends each broadcast RetransmitMult×ceil(log10(N+1))
		// times per node to random nodes, so a node misses one with
		// probability about e^-that (e^-8 below 100 nodes), and then
		// learns the new node only from a push/pull, up to one
		// (scaled) PushPullInterval later. The build does not wait for
		// such stragglers batch by batch, only for all but 1 % of the
		// nodes (all but one below 200), and for all of them at the end.
		took, ok := waitAll(sc.nodes, dilated(simSpreadTarget, sc.k), func(nd simNode) bool { return nd.c.NumMembers() == want })
		if !ok {
			sc.lateBatches++
			if os.Getenv("AMB_SIM_VERBOSE") != "" {
				sc.logMissing(t, want)
			}
			most := func() bool {
				k := 0
				for _, nd := range sc.nodes {
					if nd.c.NumMembers() == want {
						k++
					}
				}
				return want-k <= max(1, want/100)
			}
			if _, ok := waitAll(sc.nodes[:1], dilated(2*time.Minute, sc.k), func(simNode) bool { return most() }); !ok {
				lo, hi := sc.memberRange()
				t.Fatalf("building %d nodes: %d joined, more than 1 %% of the nodes (or one) do not list all after %s (members listed: %d..%d; %+v; failure lines %+v)",
					n, want, (dilated(2*time.Minute, sc.k) + took).Round(time.Second), lo, hi, sc.net.traffic(), sc.log.counts(""))
			}
		}
		calm, busy := simCalm(calmAt, dilated(20*time.Second, sc.k))
		sc.calmWait += calm
		if busy > calmAt {
			// The cores never came back: the cluster is feeding on its
			// own suspicions. Say where, instead of waiting for the
			// joins to time out.
			lo, hi := sc.memberRange()
			t.Fatalf("building %d nodes: collapsed at %d nodes: process CPU still %.0f %% of %d cores %s after the batch (members listed %d..%d; %+v; failure lines since the start %+v)",
				n, want, busy, runtime.NumCPU(), calm.Round(time.Second), lo, hi, sc.net.traffic(), sc.log.counts(""))
		}
		if os.Getenv("AMB_SIM_VERBOSE") != "" {
			lo, hi := sc.memberRange()
			t.Logf("batch to %d: joins %s, then %s (%d..%d), CPU calm after %s (%.0f %%)", want, joined.Round(time.Millisecond), took.Round(time.Millisecond), lo, hi, calm.Round(time.Millisecond), busy)
		}
		if want/100 > (want-len(batch))/100 || want == n {
			t.Logf("building: %d nodes joined after %s (process CPU %.0f %% of %d cores; %s waiting for CPU <= %.0f %%; %d joins retried; %d batches not listed by every node within %s; failure lines %+v)",
				want, time.Since(start).Round(time.Second), cpu.percent(), runtime.NumCPU(), sc.calmWait.Round(time.Second), calmAt, sc.retries, sc.lateBatches, simSpreadTarget, sc.log.counts(""))
		}
	}
	pp := simPushPullScale(sc.cfg().Memberlist.PushPullInterval, n)
	final := 2*pp + dilated(time.Minute, sc.k)
	// AMB_SIM_FINAL_WAIT (simulated time) shortens this wait for a long
	// dilated run: when it runs out with at most 1 % of the nodes short of
	// members (stragglers that wait for a push/pull), the measurement goes
	// on and the stragglers are logged and counted, not hidden.
	if v := os.Getenv("AMB_SIM_FINAL_WAIT"); v != "" {
		final = dilated(simEnvDuration(t, "AMB_SIM_FINAL_WAIT", final), sc.k)
	}
	took, ok := waitAll(sc.nodes, final, func(nd simNode) bool { return nd.c.NumMembers() == n })
	t.Logf("building: every node lists all %d: %v after %s of wall time", n, ok, took.Round(time.Millisecond))
	if !ok && os.Getenv("AMB_SIM_FINAL_WAIT") != "" {
		short := 0
		for _, nd := range sc.nodes {
			if nd.c.NumMembers() != n {
				short++
			}
		}
		lo, hi := sc.memberRange()
		t.Logf("FIGURE sim nodes=%d stragglers %d nodes do not list all %d after AMB_SIM_FINAL_WAIT (members listed %d..%d)", n, short, n, lo, hi)
		if short <= max(1, n/100) {
			ok = true
		}
	}
	if !ok {
		lo, hi := sc.memberRange()
		t.Fatalf("building %d nodes: not every node lists all %d %s after the last join, two push/pull intervals and a minute (members listed: %d..%d; failure lines %+v)",
			n, n, took.Round(time.Second), lo, hi, sc.log.counts(""))
	}
	return time.Since(start)
}

// simCalmPercent is the process CPU, in percent of all cores, the build
// waits to fall to after each batch (AMB_SIM_CALM, default 75, at most
// 20s per batch: idle nodes alone cost more as N grows). The cost
// of a batch comes after its joins: every node forwards the new nodes'
// alive messages and records RetransmitMult×log10(N) times. Starting the
// next batch while two shared cores are still busy with that is what let
// earlier 1,000-node builds pile up probe timeouts and collapse into
// thousands of false failure marks at 200-400 nodes.
func simCalmPercent(t *testing.T) float64 {
	v := os.Getenv("AMB_SIM_CALM")
	if v == "" {
		return 75
	}
	p, err := strconv.ParseFloat(v, 64)
	if err != nil || p <= 0 || p > 100 {
		t.Fatalf("AMB_SIM_CALM=%q: want a percentage in (0, 100]", v)
	}
	return p
}

// simCalm waits until the process used at most pct percent of all cores
// over a 500ms window, or limit passed; it returns how long it waited and
// the last window's figure.
func simCalm(pct float64, limit time.Duration) (time.Duration, float64) {
	start := time.Now()
	for {
		m := startCPU()
		time.Sleep(500 * time.Millisecond) // the measurement window
		busy := m.percent()
		if busy <= pct || time.Since(start) > limit {
			return time.Since(start), busy
		}
	}
}

func (sc *simCluster) memberRange() (lo, hi int) {
	lo = math.MaxInt
	for _, nd := range sc.nodes {
		m := nd.c.NumMembers()
		lo, hi = min(lo, m), max(hi, m)
	}
	return lo, hi
}

// cpuMeter measures the share of the machine's cores this process used.
type cpuMeter struct {
	wall time.Time
	cpu  time.Duration
	ok   bool
}

func startCPU() cpuMeter {
	cpu, ok := processCPU()
	return cpuMeter{wall: time.Now(), cpu: cpu, ok: ok}
}

// percent returns the CPU used since start, in percent of all cores
// (100 = every core busy), or -1 where it cannot tell.
func (m cpuMeter) percent() float64 {
	cpu, ok := processCPU()
	wall := time.Since(m.wall)
	if !ok || !m.ok || wall <= 0 {
		return -1
	}
	return 100 * float64(cpu-m.cpu) / float64(wall) / float64(runtime.NumCPU())
}

// simResult is one size's measurement.
type simResult struct {
	build                  time.Duration
	join                   time.Duration
	hide, dead             spread // failure: catalog hides it; memberlist declares it dead
	failBound              time.Duration
	falseHides             int
	idle                   time.Duration
	bytesAvg, bytesBusiest float64
	// busiestPackets: the busiest node by packets alone. A node that takes
	// part in a push/pull during the window sends its whole state on a
	// stream at once (about 210 KB at 1,000 nodes), which bytesBusiest
	// spreads over the window.
	busiestPackets          float64
	packetBytes, streamByte float64 // per node per second
	cpuIdle, cpuJoin        float64
	cpuFail                 float64
	dropped                 int64
	falseMarks              failureCounts

	// Push/pull: a full state exchange every pushPull per node. A young
	// cluster has done few (memberlist waits a random stagger plus one
	// whole interval before a node's first), so the idle window can miss
	// them; the steady rate is estimated from the size of the join's own
	// exchange, usually the only stream in the join phase.
	idleDials int64
	// queuedStart and queuedEnd are the record broadcasts still queued,
	// per node, as the idle window opens and closes: a window that opens
	// on a backlog measures the build's tail, not an idle cluster.
	queuedStart, queuedEnd float64
	// missingRecords: pairs of a node and an alive member of it whose
	// record the node lacks, as the idle window opens (its catalog cannot
	// route to the member); missingNodes: nodes with at least one.
	missingRecords, missingNodes int
	// joinRecord: how the joiner's record (its catalog entry) spread.
	joinRecord  spread
	exchange    float64 // bytes of one push/pull (both directions)
	pushPull    time.Duration
	bytesSteady float64 // packets measured plus exchange/pushPull
}

// scaled returns r in simulated time: durations divided by k, bytes per
// second multiplied by k. CPU figures stay as measured.
func (r simResult) scaled(k float64) simResult {
	d := func(x time.Duration) time.Duration {
		if x < 0 {
			return x // "none"
		}
		return time.Duration(float64(x) / k)
	}
	r.build, r.join, r.failBound, r.idle, r.pushPull = d(r.build), d(r.join), d(r.failBound), d(r.idle), d(r.pushPull)
	r.joinRecord.first, r.joinRecord.all = d(r.joinRecord.first), d(r.joinRecord.all)
	r.hide.first, r.hide.all = d(r.hide.first), d(r.hide.all)
	r.dead.first, r.dead.all = d(r.dead.first), d(r.dead.all)
	r.bytesAvg *= k
	r.bytesBusiest *= k
	r.busiestPackets *= k
	r.packetBytes *= k
	r.streamByte *= k
	r.bytesSteady *= k
	return r
}

// simPushPullScale is memberlist's pushPullScale (util.go): past 32 nodes
// the push/pull interval grows by one interval per doubling.
func simPushPullScale(interval time.Duration, n int) time.Duration {
	if n <= 32 {
		return interval
	}
	return time.Duration(math.Ceil(math.Log2(float64(n))-math.Log2(32))+1) * interval
}

func simScale(t *testing.T, n int, profile string) string {
	seed := uint64(n)
	if v := os.Getenv("AMB_SIM_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("AMB_SIM_SEED=%q: want an unsigned integer", v)
		}
		seed = s
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	k := simDilate(t)
	sc := &simCluster{net: &simNet{}, log: newFailureLog(), k: k,
		cfg: func() Config { return simDilateConfig(simProfiles[profile](), k) }}
	mc := sc.cfg().Memberlist // dilated: every wait below derived from it is in wall time
	var r simResult           // raw: wall-clock durations and bytes per wall second
	r.build = sc.build(t, n, rng)
	buildFalse := sc.log.counts("")

	// Settle: the build's last alive messages and records are still being
	// retransmitted; idle traffic is measured after them.
	// A broadcast is sent RetransmitMult×ceil(log10(N+1)) times, one
	// GossipInterval apart at most; twice that is enough.
	settle := 2 * time.Duration(mc.RetransmitMult) * time.Duration(math.Ceil(math.Log10(float64(n+1)))) * mc.GossipInterval
	// AMB_SIM_SETTLE (simulated time) overrides it, to measure an older
	// cluster: memberlist's first push/pull comes a random stagger plus a
	// whole (scaled) interval after a node starts.
	if v := os.Getenv("AMB_SIM_SETTLE"); v != "" {
		settle = dilated(simEnvDuration(t, "AMB_SIM_SETTLE", settle), k)
	}
	simSettle(t, sc, settle, k)
	sc.log.reset()

	// Idle gossip: bytes sent per node per second.
	// A window of 5s keeps CI's run short; a push/pull (every 30s, scaled
	// up past 32 nodes) then falls in it or not, so the curve uses 30s.
	// AMB_SIM_IDLE is simulated time; the window waited is K times that.
	r.idle = dilated(simEnvDuration(t, "AMB_SIM_IDLE", 5*time.Second), k)
	cpu := startCPU()
	before := sc.net.traffic()
	sentBefore, packetsBefore := make([]int64, n), make([]int64, n)
	for i, nd := range sc.nodes {
		packetsBefore[i] = nd.t.packetBytes.Load()
		sentBefore[i] = packetsBefore[i] + nd.t.streamBytes.Load()
	}
	r.queuedStart = sc.queuedRecords()
	r.missingRecords, r.missingNodes = sc.missingRecords()
	snapStart := sc.snapshot()
	stopProfile := simIdleProfile(t, n, profile)
	time.Sleep(r.idle) // the measurement window itself
	stopProfile()
	r.queuedEnd = sc.queuedRecords()
	sc.logBusiest(t, "idle window", snapStart, sc.snapshot(), r.idle, k)
	var busiest, busiestPackets int64
	for i, nd := range sc.nodes {
		busiest = max(busiest, nd.t.packetBytes.Load()+nd.t.streamBytes.Load()-sentBefore[i])
		busiestPackets = max(busiestPackets, nd.t.packetBytes.Load()-packetsBefore[i])
	}
	idle := sc.net.traffic().sub(before)
	r.cpuIdle = cpu.percent()
	perNode := float64(n) * r.idle.Seconds()
	r.packetBytes = float64(idle.packetBytes) / perNode
	r.streamByte = float64(idle.streamBytes) / perNode
	r.bytesAvg = r.packetBytes + r.streamByte
	r.bytesBusiest = float64(busiest) / r.idle.Seconds()
	r.busiestPackets = float64(busiestPackets) / r.idle.Seconds()
	r.idleDials = idle.dials

	// A join: a new node joins a random member; every node must list it.
	joiner := sc.start(t)
	cpu = startCPU()
	beforeJoin := sc.net.traffic()
	at := time.Now()
	if _, err := joiner.c.Join([]string{sc.nodes[rng.IntN(n)].t.addr}); err != nil {
		t.Fatalf("%d nodes: join: %v", n, err)
	}
	joined := time.Since(at)
	// Two spreads from one start: memberlist lists the joiner alive
	// (r.join), and the catalog holds its record (r.joinRecord).
	js := waitSpreads(sc.nodes, dilated(time.Minute, k),
		func(nd simNode) bool { return nd.c.Alive(joiner.c.LocalNode()) },
		func(nd simNode) bool { return simHasRecord(nd.c, joiner.c.LocalNode()) })
	ok := js[0].done
	r.join = joined + js[0].all
	r.joinRecord = spread{first: joined + js[1].first, all: joined + js[1].all, done: js[1].done}
	r.cpuJoin = cpu.percent()
	// The joiner sends its own one-node state and gets the full state
	// back; a periodic push/pull sends the full state both ways. Streams
	// of other push/pulls in the same seconds only make this larger.
	if j := sc.net.traffic().sub(beforeJoin); j.dials > 0 {
		r.exchange = 2 * float64(j.streamBytes-joiner.t.streamBytes.Load()) / float64(j.dials)
	}
	r.pushPull = simPushPullScale(mc.PushPullInterval, n+1)
	r.bytesSteady = r.packetBytes + r.exchange/r.pushPull.Seconds()
	if !ok {
		t.Errorf("%d nodes: the join did not reach every node within a minute", n)
	}
	if !r.joinRecord.done {
		t.Errorf("%d nodes: the joiner's record did not reach every node's catalog within a minute", n)
	}
	if r.missingRecords > 0 {
		t.Errorf("%d nodes: after the settle, %d nodes lacked the record of an alive member (%d pairs)", n, r.missingNodes, r.missingRecords)
	}
	if _, ok := waitAll([]simNode{joiner}, dilated(time.Minute, k), func(nd simNode) bool { return nd.c.NumMembers() == n+1 }); !ok {
		t.Errorf("%d nodes: the new node does not list all %d members after a minute", n, n+1)
	}

	// A failure: a node is killed without a goodbye (its packets lost,
	// its port refusing, as a SIGKILLed process's). Two spreads are
	// measured on every other node, from one start:
	//   - hidden: the catalog leaves out the node's services (what users
	//     of the mesh see). The product's fast path does it: a node whose
	//     probe fails holds it suspect, a few suspecting nodes dial its
	//     gossip port, refused hides it at once and the first to see the
	//     refusal tells every member, each confirming with its own dial
	//     (suspect.go). memberlist's dead declaration hides it too.
	//   - dead: memberlist declares the node dead. The longest that may
	//     take: the probe that finds it (one ProbeInterval, plus the one
	//     before it that may just have passed it by), the longest
	//     suspicion timeout (SuspicionMaxTimeoutMult times
	//     SuspicionMult×log10(N)×ProbeInterval) and a generous 10s for the
	//     dead message to spread on two shared cores.
	vi := rng.IntN(n)
	victim := sc.nodes[vi]
	rest := append(append([]simNode{joiner}, sc.nodes[:vi]...), sc.nodes[vi+1:]...)
	minSuspect := time.Duration(float64(mc.SuspicionMult) * math.Max(1, math.Log10(float64(n+1))) * float64(mc.ProbeInterval))
	r.failBound = 2*mc.ProbeInterval + time.Duration(mc.SuspicionMaxTimeoutMult)*minSuspect + dilated(10*time.Second, k)
	name := victim.c.LocalNode()
	cpu = startCPU()
	victim.t.kill()
	sp := waitSpreads(rest, r.failBound,
		func(nd simNode) bool { return simHidden(nd.c, name) },
		func(nd simNode) bool { return !nd.c.Alive(name) })
	r.cpuFail = cpu.percent()
	r.hide, r.dead = sp[0], sp[1]
	if !r.hide.done {
		t.Errorf("%d nodes: the failure did not leave every catalog within %s", n, r.failBound.Round(time.Second))
	}
	if !r.dead.done {
		t.Errorf("%d nodes: memberlist did not declare the failed node dead on every node within %s, the longest suspicion the timers allow", n, r.failBound.Round(time.Second))
	}
	r.dropped = sc.net.traffic().sub(before).dropped
	r.falseMarks = sc.log.counts(name)
	r.falseHides = simFalseHides(rest, name)
	raw := r
	r = r.scaled(k)
	minSuspect = time.Duration(float64(minSuspect) / k)

	// Every figure below is simulated time: wall durations / K, rates per
	// wall second × K; "raw" gives the wall-clock figure where K > 1.
	figure := func(name, format string, args ...any) {
		t.Logf("FIGURE sim profile=%s nodes=%d dilate=%g %s %s", profile, n, k, name, fmt.Sprintf(format, args...))
	}
	rawNote := func(format string, args ...any) string {
		if k == 1 {
			return ""
		}
		return "; raw " + fmt.Sprintf(format, args...)
	}
	figure("build", "%s (batches of %d, %d not listed by every node within %s; %d joins retried; live nodes marked failed while building: %d (%d lines); GOGC=%q GOMEMLIMIT=%q%s)",
		r.build.Round(time.Millisecond), simBatch(t), sc.lateBatches, simSpreadTarget, sc.retries, buildFalse.markNodes, buildFalse.markLines, os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"),
		rawNote("%s", raw.build.Round(time.Millisecond)))
	figure("idle_gossip_bytes_per_node_per_s", "%.0f (packets %.0f, streams %.0f in %d push/pulls; busiest node %.0f, by packets alone %.0f; %s window; record broadcasts queued per node %.1f at its start, %.1f at its end; target <= %d%s)",
		r.bytesAvg, r.packetBytes, r.streamByte, r.idleDials, r.bytesBusiest, r.busiestPackets, r.idle, r.queuedStart, r.queuedEnd, simBytesTarget,
		rawNote("%.0f B/s per node, busiest %.0f, over %s", raw.bytesAvg, raw.bytesBusiest, raw.idle))
	figure("steady_gossip_bytes_per_node_per_s", "%.0f (packets %.0f measured + one push/pull of %.0f bytes every %s%s)",
		r.bytesSteady, r.packetBytes, r.exchange, r.pushPull, rawNote("%.0f, push/pull every %s", raw.bytesSteady, raw.pushPull))
	figure("join_everywhere", "%s (target <= %s: %s; process CPU %.0f %% of %d cores%s)",
		r.join.Round(time.Millisecond), simSpreadTarget, metOrMissed(r.join <= simSpreadTarget), r.cpuJoin, runtime.NumCPU(),
		rawNote("%s", raw.join.Round(time.Millisecond)))
	figure("join_record_everywhere", "%s, first node %s (the catalog holds the joiner's record; target <= %s: %s%s)",
		r.joinRecord.all.Round(time.Millisecond), r.joinRecord.first.Round(time.Millisecond), simSpreadTarget, metOrMissed(r.joinRecord.done && r.joinRecord.all <= simSpreadTarget),
		rawNote("%s", raw.joinRecord.all.Round(time.Millisecond)))
	figure("records", "as the idle window opened, %d nodes lacked the record of an alive member (%d node-member pairs)", r.missingNodes, r.missingRecords)
	figure("failure_hidden_everywhere", "%s, first node %s (the catalog leaves the killed node out: refused gossip port or dead; target <= %s: %s; process CPU %.0f %% of %d cores%s)",
		r.hide.all.Round(time.Millisecond), r.hide.first.Round(time.Millisecond), simSpreadTarget, metOrMissed(r.hide.done && r.hide.all <= simSpreadTarget),
		r.cpuFail, runtime.NumCPU(), rawNote("%s, first %s", raw.hide.all.Round(time.Millisecond), raw.hide.first.Round(time.Millisecond)))
	figure("failure_dead_everywhere", "%s, first node %s (memberlist declares it dead; target <= %s: %s; minimum suspicion timeout %s%s)",
		r.dead.all.Round(time.Millisecond), r.dead.first.Round(time.Millisecond), simSpreadTarget, metOrMissed(r.dead.done && r.dead.all <= simSpreadTarget),
		minSuspect.Round(10*time.Millisecond), rawNote("%s, first %s", raw.dead.all.Round(time.Millisecond), raw.dead.first.Round(time.Millisecond)))
	// Process CPU is never scaled: with K > 1 every node does its work in
	// K times the wall time, so CPU per node per wall second is the
	// simulator's, not a figure of the product.
	figure("idle_cpu", "%.1f %% of %d cores (%.2f ms of CPU per node per wall second%s)", r.cpuIdle, runtime.NumCPU(),
		r.cpuIdle/100*float64(runtime.NumCPU())*1000/float64(n), map[bool]string{true: "", false: "; dilated: not a product figure"}[k == 1])
	figure("stability", "packets dropped at full queues %d; live nodes marked failed %d (%d lines), suspected %d (%d lines) from settle to the failure's spread; live members hidden as refused at the end %d",
		r.dropped, r.falseMarks.markNodes, r.falseMarks.markLines, r.falseMarks.suspectNodes, r.falseMarks.suspectLines, r.falseHides)

	if r.join > simSpreadTarget {
		t.Errorf("%d nodes: a join reached every node in %s, want <= %s", n, r.join.Round(time.Millisecond), simSpreadTarget)
	}
	if r.bytesAvg > simBytesTarget || r.bytesBusiest > simBytesTarget || r.bytesSteady > simBytesTarget {
		t.Errorf("%d nodes: idle gossip %.0f B/s per node (busiest %.0f, steady estimate %.0f), want <= %d", n, r.bytesAvg, r.bytesBusiest, r.bytesSteady, simBytesTarget)
	}
	return fmt.Sprintf("| %d | %s | %g | %s | %s | %s | %.0f (%.0f) | %.0f | %.0f / %.0f / %.0f %% | %d | %d | %d |",
		n, profile, k, r.join.Round(time.Millisecond), simSpreadCell(r.hide), simSpreadCell(r.dead),
		r.bytesAvg, r.bytesBusiest, r.bytesSteady, r.cpuIdle, r.cpuJoin, r.cpuFail, r.dropped, r.falseMarks.markNodes, r.falseHides)
}

// simSpreadCell formats a spread for the table: "first / every node".
func simSpreadCell(s spread) string {
	round := func(d time.Duration) string {
		if d < 0 {
			return "none"
		}
		if d < 10*time.Second {
			return d.Round(10 * time.Millisecond).String()
		}
		return d.Round(100 * time.Millisecond).String()
	}
	if !s.done {
		return round(s.first) + " / not all in " + round(s.all)
	}
	return round(s.first) + " / " + round(s.all)
}

// simFalseHides counts the members other than victim that some node in
// nodes hides as refused (their gossip port refused a dial). Every node
// but the victim is alive and listening, so any is a false positive.
func simFalseHides(nodes []simNode, victim string) int {
	n := 0
	for _, nd := range nodes {
		nd.c.mu.Lock()
		for name, m := range nd.c.members {
			if name != victim && m.refused {
				n++
			}
		}
		nd.c.mu.Unlock()
	}
	return n
}

// simSettle waits out the settle time, letting queued broadcasts drain (a
// wait, not a synchronisation). Every 10 s of simulated time it logs the
// record broadcasts still queued per node and the gossip each node sent
// in those 10 s, so a run shows how long a start's records take to drain
// and what the cluster sends while they do.
func simSettle(t *testing.T, sc *simCluster, settle time.Duration, k float64) {
	step := dilated(10*time.Second, k)
	start := time.Now()
	for left := settle; left > 0; left -= step {
		before, at, snap := sc.net.traffic(), time.Now(), sc.snapshot()
		time.Sleep(min(step, left))
		d := sc.net.traffic().sub(before)
		sc.logBusiest(t, fmt.Sprintf("settle to %s", time.Duration(float64(time.Since(start))/k).Round(time.Second)), snap, sc.snapshot(), time.Since(at), k)
		perNode := float64(len(sc.nodes)) * time.Since(at).Seconds() / k // simulated node-seconds
		t.Logf("settle: %s simulated: record broadcasts queued per node %.1f; sent per node %.0f B/s (packets %.0f, streams %.0f)",
			time.Duration(float64(time.Since(start))/k).Round(time.Second), sc.queuedRecords(),
			float64(d.packetBytes+d.streamBytes)/perNode, float64(d.packetBytes)/perNode, float64(d.streamBytes)/perNode)
	}
}

// missingRecords counts the pairs of a node and an alive member of it
// (not itself) whose record the node does not have, and the nodes with
// at least one such member.
func (sc *simCluster) missingRecords() (pairs, nodes int) {
	for _, nd := range sc.nodes {
		c := nd.c
		c.mu.Lock()
		miss := 0
		for name, m := range c.members {
			if _, ok := c.records[name]; !ok && name != c.self.Node && m.State == stateAlive {
				miss++
			}
		}
		c.mu.Unlock()
		pairs += miss
		if miss > 0 {
			nodes++
		}
	}
	return pairs, nodes
}

// simHasRecord reports whether c holds a record of node name, which its
// catalog lists while the node is alive.
func simHasRecord(c *Cluster, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.records[name]
	return ok
}

// simNodeSnap is one node's counters at one moment.
type simNodeSnap struct {
	byClass            [simClasses]int64
	stream, dials      int64
	queuedFull, queued int
}

// snapshot reads every node's counters and queue lengths.
func (sc *simCluster) snapshot() []simNodeSnap {
	out := make([]simNodeSnap, len(sc.nodes))
	for i, nd := range sc.nodes {
		s := &out[i]
		for c := range s.byClass {
			s.byClass[c] = nd.t.byClass[c].Load()
		}
		s.stream, s.dials = nd.t.streamBytes.Load(), nd.t.dials.Load()
		s.queuedFull, s.queued = nd.c.bcast.full.NumQueued(), nd.c.bcast.NumQueued()
	}
	return out
}

// logBusiest logs, for the window between a and b (wall time w) of phase, what
// the five busiest nodes sent by class, with their place in the join
// order and their queues, what all nodes sent by class, and the records
// queued by join order (tenths of the nodes), in simulated B/s.
func (sc *simCluster) logBusiest(t *testing.T, phase string, a, b []simNodeSnap, w time.Duration, k float64) {
	rate := func(x int64) float64 { return float64(x) * k / w.Seconds() }
	type row struct {
		i     int
		total int64
	}
	rows := make([]row, len(a))
	var all [simClasses]int64
	var allStream int64
	for i := range a {
		rows[i].i = i
		for c := range simClasses {
			d := b[i].byClass[c] - a[i].byClass[c]
			rows[i].total += d
			all[c] += d
		}
		d := b[i].stream - a[i].stream
		rows[i].total += d
		allStream += d
	}
	classes := func(x [simClasses]int64, div float64) string {
		var parts []string
		for c := range simClasses {
			parts = append(parts, fmt.Sprintf("%s %.0f", simClassNames[c], rate(x[c])/div))
		}
		return strings.Join(parts, ", ")
	}
	t.Logf("%s: per node B/s by class: %s, streams %.0f", phase, classes(all, float64(len(a))), rate(allStream)/float64(len(a)))
	sort.Slice(rows, func(x, y int) bool { return rows[x].total > rows[y].total })
	for _, r := range rows[:min(5, len(rows))] {
		var d [simClasses]int64
		for c := range simClasses {
			d[c] = b[r.i].byClass[c] - a[r.i].byClass[c]
		}
		t.Logf("%s: busy node #%d (join order) %.0f B/s: %s, streams %.0f in %d dials opened; queued full %d→%d, all %d→%d",
			phase, r.i, rate(r.total), classes(d, 1), rate(b[r.i].stream-a[r.i].stream), b[r.i].dials-a[r.i].dials,
			a[r.i].queuedFull, b[r.i].queuedFull, a[r.i].queued, b[r.i].queued)
	}
	var tenths []string
	for d := range 10 {
		lo, hi := d*len(a)/10, (d+1)*len(a)/10
		q, p := 0, int64(0)
		for i := lo; i < hi; i++ {
			q += a[i].queued
			p += rows0(b[i].byClass) - rows0(a[i].byClass)
		}
		if hi > lo {
			tenths = append(tenths, fmt.Sprintf("%.0f q/%.0f B/s", float64(q)/float64(hi-lo), rate(p)/float64(hi-lo)))
		}
	}
	t.Logf("%s: by join order, tenths: records queued at the start / packet B/s: %s", phase, strings.Join(tenths, "; "))
}

func rows0(x [simClasses]int64) (s int64) {
	for _, v := range x {
		s += v
	}
	return s
}

// queuedRecords is the mean number of record broadcasts queued per node.
func (sc *simCluster) queuedRecords() float64 {
	if len(sc.nodes) == 0 {
		return 0
	}
	var q int
	for _, nd := range sc.nodes {
		q += nd.c.bcast.NumQueued()
	}
	return float64(q) / float64(len(sc.nodes))
}

// simIdleProfile starts a CPU profile of the idle window when
// AMB_SIM_IDLE_PROFILE names a directory (idle-<profile>-<n>.prof there;
// not with -test.cpuprofile, which holds the one profiler); it returns
// the function that stops it.
func simIdleProfile(t *testing.T, n int, profile string) func() {
	dir := os.Getenv("AMB_SIM_IDLE_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("idle-%s-%d.prof", profile, n)))
	if err != nil {
		t.Fatalf("AMB_SIM_IDLE_PROFILE: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		t.Fatalf("AMB_SIM_IDLE_PROFILE: %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			t.Errorf("AMB_SIM_IDLE_PROFILE: %v", err)
		}
	}
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// TestSimDilateConfig checks that dilation multiplies every timer of the
// memberlist profile and the gossip timers derived from them, and leaves
// the profile it was given alone.
func TestSimDilateConfig(t *testing.T) {
	base := DefaultConfig()
	got := simDilateConfig(base, 4)
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"ProbeInterval", got.Memberlist.ProbeInterval, 4 * time.Second},
		{"ProbeTimeout", got.Memberlist.ProbeTimeout, 2 * time.Second},
		{"GossipInterval", got.Memberlist.GossipInterval, 800 * time.Millisecond},
		{"PushPullInterval", got.Memberlist.PushPullInterval, 120 * time.Second},
		{"TCPTimeout", got.Memberlist.TCPTimeout, 8 * time.Second},
		{"GossipToTheDeadTime", got.Memberlist.GossipToTheDeadTime, 120 * time.Second},
		{"QueueCheckInterval", got.Memberlist.QueueCheckInterval, 120 * time.Second},
		{"base ProbeInterval", base.Memberlist.ProbeInterval, time.Second},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
	// Every Duration field, not only those named above.
	b, g := reflect.ValueOf(*base.Memberlist), reflect.ValueOf(*got.Memberlist)
	for i := range b.NumField() {
		if b.Field(i).Type() == reflect.TypeFor[time.Duration]() && g.Field(i).Int() != 4*b.Field(i).Int() {
			t.Errorf("%s = %d, want 4 × %d", b.Type().Field(i).Name, g.Field(i).Int(), b.Field(i).Int())
		}
	}
	got.NodeName, got.AdvertiseAddr, got.BindPort = "n", "127.0.0.1", 0
	c, err := New(got)
	if err != nil {
		t.Fatal(err)
	}
	if c.scanEvery != time.Second || c.refusedGrace() != 16*time.Second || c.reap != 120*time.Second {
		t.Errorf("derived timers: scanEvery %s, refusedGrace %s, reap %s; want 1s, 16s, 2m0s", c.scanEvery, c.refusedGrace(), c.reap)
	}
	if r := c.cfg.memberlistConfig(&delegate{}, slog.New(slog.DiscardHandler)).DeadNodeReclaimTime; r != 4*time.Second {
		t.Errorf("DeadNodeReclaimTime = %s, want 4s", r)
	}
}
