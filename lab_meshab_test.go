package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/lab"
	"github.com/ambassador-mesh/ambassador/mesh"
)

// abNode runs a node of one of TestLabMeshAB's clusters; a cluster named
// alt* gets AMB_MESHAB_ALTENV in its environment.
func abNode(t *testing.T, h *lab.Host, bin, sock string, args ...string) *lab.Proc {
	t.Helper()
	pre := []string{bin}
	if strings.Contains(sock, "alt") && os.Getenv("AMB_MESHAB_ALTENV") != "" {
		pre = append(append([]string{"env"}, strings.Fields(os.Getenv("AMB_MESHAB_ALTENV"))...), bin)
	}
	p := h.Start("amb-"+filepath.Base(sock), append(append(pre, "--log-level", "warn", "--socket", sock), args...)...).CheckExit()
	p.WaitUntil(20*time.Second, "node on "+sock, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return mesh.CallSocket(ctx, sock, "GET", "/v1/health", nil, new(map[string]string)) == nil
	})
	return p
}

// TestLabMeshAB compares the mesh path's redis GET ops/s (-c 50) of this
// tree's ambassador ("mesh"), another build or environment ("alt") and two
// chained HAProxies, interleaved round by round (the order reversed every
// other round), with the proxies' CPU per request: TestLabMeshBench's lab,
// GET only, for A/B runs of a change (issue 9, session 8). With
// AMB_MESHAB_MODE=stat, perf or strace (comma-separated, "ab" the default)
// it runs one GET benchmark per path under `perf stat` (per thread:
// task-clock, context switches, migrations, system calls), `perf record
// -g` (files in AMB_MESHAB_OUT, default /tmp/meshab) or `strace -c -f`
// of both proxies instead; "all" records the whole machine (`perf record
// -a -g`) and "sched" its scheduler (`perf sched record -a`, for `perf
// sched latency`), to see where a request waits rather than works.
//
// Heavy: only with AMB_MESHAB=1, under the shared lock:
//
//	go test -c -o /tmp/meshab.test . && flock /tmp/amb-heavy.lock env AMB_MESHAB=1 AMB_MESHAB_ALT=/tmp/amb-main /tmp/meshab.test -test.run '^TestLabMeshAB$' -test.v
//
// Knobs: AMB_MESHAB_ROUNDS (3), AMB_MESHAB_N (redis-benchmark -n,
// 100000), AMB_MESHAB_ALT (an ambassador binary for the alt clusters;
// none = no alt), AMB_MESHAB_ALTENV (their environment, e.g.
// GOMAXPROCS=1), AMB_MESHAB_KEY=1 (add the --key clusters and HAProxies
// with mutual TLS 1.3), AMB_MESHAB_PEERS (a comma list of the paths to
// run: direct, mesh, alt, meshkey, altkey, haproxy, haproxy-mtls).
func TestLabMeshAB(t *testing.T) {
	if os.Getenv("AMB_MESHAB") == "" {
		t.Skip("heavy A/B benchmark: set AMB_MESHAB=1 and hold /tmp/amb-heavy.lock")
	}
	needBinaries(t, "redis-server", "redis-cli", "redis-benchmark", "haproxy", "openssl")
	mode := os.Getenv("AMB_MESHAB_MODE")
	rounds := envInt(t, "AMB_MESHAB_ROUNDS", 3)
	n := envInt(t, "AMB_MESHAB_N", 100000)
	alt := os.Getenv("AMB_MESHAB_ALT") // another ambassador binary, for A/B
	out := os.Getenv("AMB_MESHAB_OUT")
	if out == "" {
		out = "/tmp/meshab"
	}
	_ = os.MkdirAll(out, 0o755)
	l := lab.New(t)
	c, s := l.AddHost("client"), l.AddHost("service")
	s.Start("redis", "redis-server", "--port", "12345", "--bind", "127.0.0.1", s.Addr, "--protected-mode", "no", "--save", "", "--appendonly", "no")
	dir := t.TempDir()
	pki := makeMTLS(t, dir)
	keyFile := filepath.Join(dir, "cluster.key")
	_ = os.WriteFile(keyFile, []byte(labKey+"\n"), 0o600)
	peers := []benchPeer{{"direct", "direct", s.Addr, "12345", "", nil}}
	cl := func(name, bin string, gp, dp int, key bool, svc string, port int) {
		args := []string{"--cluster", name, "--no-mdns", "--gossip-port", strconv.Itoa(gp), "--data-port", strconv.Itoa(dp), "--http", ""}
		if key {
			args = append(args, "--key-file", keyFile)
		}
		ps := abNode(t, s, bin, filepath.Join(s.Dir, name+".sock"), append(args, "--announce", fmt.Sprintf("%s:%d=12345", svc, port))...)
		pc := abNode(t, c, bin, filepath.Join(c.Dir, name+".sock"), append(args, "--join", s.Addr+":"+strconv.Itoa(gp))...)
		peers = append(peers, benchPeer{name, name, "127.0.0.1", strconv.Itoa(port), "", []int{pc.Pid(), ps.Pid()}})
	}
	cl("mesh", binary, 7946, 7947, false, "redis", 6379)
	if alt != "" {
		cl("alt", alt, 7966, 7967, false, "redisalt", 6390)
	}
	if os.Getenv("AMB_MESHAB_KEY") != "" {
		cl("meshkey", binary, 7956, 7957, true, "rediskey", 6380)
		if alt != "" {
			cl("altkey", alt, 7976, 7977, true, "redisaltkey", 6391)
		}
	}
	haS := writeHAProxy(t, s, filepath.Join(s.Dir, "haproxy.cfg"), pki, []haproxyRoute{
		{"redis", s.Addr + ":8101", "127.0.0.1:12345", ""},
		{"redis_tls", s.Addr + ":8111", "127.0.0.1:12345", "bind"},
	})
	haC := writeHAProxy(t, c, filepath.Join(c.Dir, "haproxy.cfg"), pki, []haproxyRoute{
		{"redis", "127.0.0.1:8001", s.Addr + ":8101", ""},
		{"redis_tls", "127.0.0.1:8011", s.Addr + ":8111", "server"},
	})
	peers = append(peers, benchPeer{"haproxy", "haproxy", "127.0.0.1", "8001", "", []int{haC.Pid(), haS.Pid()}})
	if os.Getenv("AMB_MESHAB_KEY") != "" {
		peers = append(peers, benchPeer{"haproxy-mtls", "haproxy-mtls", "127.0.0.1", "8011", "", []int{haC.Pid(), haS.Pid()}})
	}
	if only := os.Getenv("AMB_MESHAB_PEERS"); only != "" {
		var sel []benchPeer
		for _, p := range peers {
			if strings.Contains(","+only+",", ","+p.name+",") {
				sel = append(sel, p)
			}
		}
		peers = sel
	}
	for _, p := range peers {
		lab.WaitFor(t, 30*time.Second, "redis PING via "+p.name, func() bool {
			o, _ := c.Run(5*time.Second, "redis-cli", "-h", p.host, "-p", p.redis, "ping")
			return strings.TrimSpace(o) == "PONG"
		})
		if _, err := redisBench(c, p, 5000); err != nil {
			t.Fatal(err)
		}
	}
	get := func(p benchPeer, n int) (float64, float64) {
		o, err := c.Run(5*time.Minute, "redis-benchmark", "-h", p.host, "-p", p.redis, "-t", "get", "-c", "50", "-n", strconv.Itoa(n), "--csv")
		if err != nil {
			t.Fatalf("%v %s", err, o)
		}
		for _, line := range strings.Split(o, "\n") {
			f := strings.Split(line, ",")
			if len(f) > 6 && strings.Trim(f[0], `"`) == "GET" {
				v, _ := strconv.ParseFloat(strings.Trim(f[1], `"`), 64)
				p99, _ := strconv.ParseFloat(strings.Trim(f[6], `"`), 64)
				return v, p99
			}
		}
		return 0, 0
	}
	for _, mode := range strings.Split(mode, ",") {
		switch mode {
		case "perf", "stat", "strace", "sched", "all":
			for _, p := range peers {
				if p.proxies == nil {
					continue
				}
				var pids []string
				for _, pid := range p.proxies {
					pids = append(pids, strconv.Itoa(pid))
				}
				var wg sync.WaitGroup
				var res string
				wg.Go(func() {
					var cmd *exec.Cmd
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					switch mode {
					case "perf":
						cmd = exec.CommandContext(ctx, "perf", "record", "-F", "1000", "-g", "-o", filepath.Join(out, p.name+".perf"), "-p", strings.Join(pids, ","), "--", "sleep", "4")
					case "sched":
						cmd = exec.CommandContext(ctx, "perf", "sched", "record", "-a", "-o", filepath.Join(out, p.name+".sched"), "--", "sleep", "2")
					case "all":
						cmd = exec.CommandContext(ctx, "perf", "record", "-a", "-F", "2000", "-g", "-o", filepath.Join(out, p.name+".all.perf"), "--", "sleep", "4")
					case "stat":
						cmd = exec.CommandContext(ctx, "perf", "stat", "-e", "task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter", "--per-thread", "-p", strings.Join(pids, ","), "--", "sleep", "4")
					case "strace":
						var a []string
						for _, pd := range pids {
							a = append(a, "-p", pd)
						}
						cmd = exec.CommandContext(ctx, "timeout", append([]string{"-s", "INT", "4", "strace", "-c", "-f"}, a...)...)
					}
					o, err := cmd.CombinedOutput()
					res = fmt.Sprintf("%v\n%s", err, o)
				})
				time.Sleep(200 * time.Millisecond) // let perf or strace attach before the load starts
				c0 := cpuTicks(t, p.proxies)
				v, p99 := get(p, n)
				cpu := float64(cpuTicks(t, p.proxies)-c0) / clkTck
				wg.Wait()
				t.Logf("%s: GET %.0f ops/s p99 %.2f cpu %.1fus/req\n%s", p.name, v, p99, cpu/float64(n)*1e6, res)
			}
		default:
			sum := map[string]float64{}
			for r := 0; r < rounds; r++ {
				for i := range peers {
					p := peers[i]
					if r%2 == 1 {
						p = peers[len(peers)-1-i]
					}
					c0 := cpuTicks(t, p.proxies)
					v, p99 := get(p, n)
					cpu := float64(cpuTicks(t, p.proxies)-c0) / clkTck
					sum[p.name] += v
					t.Logf("round %d %s: GET %.0f p99 %.2f cpu %.1fus/req", r, p.name, v, p99, cpu/float64(n)*1e6)
				}
			}
			for _, p := range peers {
				t.Logf("mean %s: GET %.0f (%.2fx direct)", p.name, sum[p.name]/float64(rounds), sum[p.name]/sum["direct"])
			}
		}
	}
}
