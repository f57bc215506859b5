package promtext

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
)

// The Go collector's families, named and meant as the official client's
// (go_memstats_* read from runtime/metrics, as that client does since
// Go 1.17): the few that dashboards of a small daemon use.
var (
	descGoroutines   = NewDesc("go_goroutines", "Number of goroutines that currently exist.", nil)
	descThreads      = NewDesc("go_threads", "Number of OS threads created.", nil)
	descInfo         = NewDesc("go_info", "Information about the Go environment.", []string{"version"})
	descAlloc        = NewDesc("go_memstats_alloc_bytes", "Number of heap bytes allocated and currently in use.", nil)
	descAllocTotal   = NewDesc("go_memstats_alloc_bytes_total", "Total number of heap bytes allocated, even if freed.", nil)
	descHeapInuse    = NewDesc("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", nil)
	descHeapReleased = NewDesc("go_memstats_heap_released_bytes", "Number of heap bytes released to OS.", nil)
	descStackInuse   = NewDesc("go_memstats_stack_inuse_bytes", "Number of bytes in use by the stack allocator.", nil)
	descSys          = NewDesc("go_memstats_sys_bytes", "Number of bytes obtained from system.", nil)
	descNextGC       = NewDesc("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place.", nil)
	descGCCycles     = NewDesc("go_gc_cycles_total", "Count of completed GC cycles.", nil)
	descGOGC         = NewDesc("go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100.", nil)
	descGOMAXPROCS   = NewDesc("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting.", nil)
)

// GoCollector exports the Go runtime's goroutines, threads, heap and
// collector figures.
func GoCollector() Collector {
	names := []string{
		"/memory/classes/heap/objects:bytes",  // 0
		"/gc/heap/allocs:bytes",               // 1
		"/memory/classes/heap/unused:bytes",   // 2
		"/memory/classes/heap/released:bytes", // 3
		"/memory/classes/heap/stacks:bytes",   // 4
		"/memory/classes/total:bytes",         // 5
		"/gc/heap/goal:bytes",                 // 6
		"/gc/cycles/total:gc-cycles",          // 7
		"/gc/gogc:percent",                    // 8
		"/sched/gomaxprocs:threads",           // 9
	}
	return CollectorFunc(func(add func(Metric)) {
		s := make([]metrics.Sample, len(names))
		for i, n := range names {
			s[i].Name = n
		}
		metrics.Read(s)
		v := func(i int) float64 {
			if s[i].Value.Kind() != metrics.KindUint64 {
				return 0 // not in this Go version
			}
			return float64(s[i].Value.Uint64())
		}
		threads, _ := runtime.ThreadCreateProfile(nil)
		add(MustNewConstMetric(descGoroutines, GaugeValue, float64(runtime.NumGoroutine())))
		add(MustNewConstMetric(descThreads, GaugeValue, float64(threads)))
		add(MustNewConstMetric(descInfo, GaugeValue, 1, runtime.Version()))
		add(MustNewConstMetric(descAlloc, GaugeValue, v(0)))
		add(MustNewConstMetric(descAllocTotal, CounterValue, v(1)))
		add(MustNewConstMetric(descHeapInuse, GaugeValue, v(0)+v(2)))
		add(MustNewConstMetric(descHeapReleased, GaugeValue, v(3)))
		add(MustNewConstMetric(descStackInuse, GaugeValue, v(4)))
		add(MustNewConstMetric(descSys, GaugeValue, v(5)))
		add(MustNewConstMetric(descNextGC, GaugeValue, v(6)))
		add(MustNewConstMetric(descGCCycles, CounterValue, v(7)))
		add(MustNewConstMetric(descGOGC, GaugeValue, v(8)))
		add(MustNewConstMetric(descGOMAXPROCS, GaugeValue, v(9)))
	})
}

// The process collector's families, as the official client names them.
var (
	descCPU     = NewDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", nil)
	descRSS     = NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", nil)
	descVSize   = NewDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", nil)
	descStart   = NewDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", nil)
	descOpenFDs = NewDesc("process_open_fds", "Number of open file descriptors.", nil)
	descMaxFDs  = NewDesc("process_max_fds", "Maximum number of open file descriptors.", nil)
	userHZ      = 100.0 // USER_HZ: 100 on every Linux architecture Go supports
)

// ProcessCollector exports this process's CPU time, memory, start time
// and file descriptors from /proc (Linux); where /proc/self/stat cannot be
// read it exports nothing, as the official client does.
func ProcessCollector() Collector {
	return CollectorFunc(func(add func(Metric)) {
		st, ok := readStat()
		if !ok {
			return
		}
		add(MustNewConstMetric(descCPU, CounterValue, float64(st.utime+st.stime)/userHZ))
		add(MustNewConstMetric(descRSS, GaugeValue, float64(st.rss*uint64(os.Getpagesize()))))
		add(MustNewConstMetric(descVSize, GaugeValue, float64(st.vsize)))
		if boot, ok := bootTime(); ok {
			add(MustNewConstMetric(descStart, GaugeValue, boot+float64(st.start)/userHZ))
		}
		if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
			add(MustNewConstMetric(descOpenFDs, GaugeValue, float64(len(fds))))
		}
		if n, ok := maxFDs(); ok {
			add(MustNewConstMetric(descMaxFDs, GaugeValue, n))
		}
	})
}

type procStat struct{ utime, stime, start, vsize, rss uint64 }

// readStat parses /proc/self/stat (proc(5)): the fields after the
// command name, which is in parentheses and may hold spaces.
func readStat() (procStat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, state
	if len(f) < 22 {
		return procStat{}, false
	}
	n := func(field int) uint64 { // field numbers as in proc(5)
		v, _ := strconv.ParseUint(f[field-3], 10, 64)
		return v
	}
	return procStat{utime: n(14), stime: n(15), start: n(22), vsize: n(23), rss: n(24)}, true
}

// bootTime is btime of /proc/stat: the boot time in seconds since the
// epoch, to which a process's start time in ticks is relative.
func bootTime() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			t, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return t, err == nil
		}
	}
	return 0, false
}
