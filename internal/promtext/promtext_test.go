package promtext

import (
	"bufio"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func write(cs ...Collector) string {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	Write(w, cs...)
	w.Flush()
	return b.String()
}

func TestWrite(t *testing.T) {
	bytes := NewDesc("x_bytes_total", "Bytes, \\ and\nmore.", []string{"service", "direction"})
	up := NewDesc("a_up", "Up.", nil)
	lat := NewDesc("x_seconds", "Latency.", []string{"service"})
	for _, c := range []struct {
		name    string
		metrics []Metric
		want    string
	}{
		{"nothing", nil, ""},
		{"gauge without labels", []Metric{MustNewConstMetric(up, GaugeValue, 1)},
			"# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n"},
		{"labels sorted by name, metrics by value, help and values escaped", []Metric{
			MustNewConstMetric(bytes, CounterValue, 7, "web", "out"),
			MustNewConstMetric(bytes, CounterValue, 1.5e10, "we\"b\\\n", "in"),
			MustNewConstMetric(bytes, CounterValue, 5, "web", "in"),
		}, "# HELP x_bytes_total Bytes, \\\\ and\\nmore.\n# TYPE x_bytes_total counter\n" +
			"x_bytes_total{direction=\"in\",service=\"we\\\"b\\\\\\n\"} 1.5e+10\n" +
			"x_bytes_total{direction=\"in\",service=\"web\"} 5\n" +
			"x_bytes_total{direction=\"out\",service=\"web\"} 7\n"},
		{"families sorted by name", []Metric{
			MustNewConstMetric(bytes, CounterValue, 0, "", ""),
			MustNewConstMetric(up, GaugeValue, math.NaN()),
		}, "# HELP a_up Up.\n# TYPE a_up gauge\na_up NaN\n" +
			"# HELP x_bytes_total Bytes, \\\\ and\\nmore.\n# TYPE x_bytes_total counter\nx_bytes_total{direction=\"\",service=\"\"} 0\n"},
		{"histogram with bounds sorted and +Inf from the count", []Metric{
			MustNewConstHistogram(lat, 4, 0.75, map[float64]uint64{0.5: 3, 0.1: 1, math.Inf(+1): 99}, "web"),
		}, "# HELP x_seconds Latency.\n# TYPE x_seconds histogram\n" +
			"x_seconds_bucket{service=\"web\",le=\"0.1\"} 1\n" +
			"x_seconds_bucket{service=\"web\",le=\"0.5\"} 3\n" +
			"x_seconds_bucket{service=\"web\",le=\"+Inf\"} 4\n" +
			"x_seconds_sum{service=\"web\"} 0.75\n" +
			"x_seconds_count{service=\"web\"} 4\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := write(CollectorFunc(func(add func(Metric)) {
				for _, m := range c.metrics {
					add(m)
				}
			}))
			if got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
			// The reference parser reads it back.
			p := expfmt.NewTextParser(model.UTF8Validation)
			if _, err := p.TextToMetricFamilies(strings.NewReader(got)); err != nil {
				t.Errorf("expfmt cannot parse it: %v", err)
			}
		})
	}
}

func TestLabelCountPanics(t *testing.T) {
	d := NewDesc("x", "X.", []string{"a", "b"})
	for _, n := range []int{0, 1, 3} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%d label values for 2 names: no panic", n)
				}
			}()
			MustNewConstMetric(d, GaugeValue, 1, make([]string, n)...)
		}()
	}
}

// TestRuntimeCollectors serves both collectors over HTTP and checks that
// the families are there with values of this process.
func TestRuntimeCollectors(t *testing.T) {
	srv := httptest.NewServer(Handler(GoCollector(), ProcessCollector()))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q, want %q", ct, ContentType)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	value := func(name string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Fatalf("%s: missing or not one sample: %v", name, f)
		}
		m := f.GetMetric()[0]
		if m.Counter != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	checks := []struct {
		name     string
		min, max float64
	}{
		{"go_goroutines", 1, 1e6},
		{"go_threads", 1, 1e6},
		{"go_memstats_alloc_bytes", 1, 1 << 40},
		{"go_memstats_alloc_bytes_total", 1, 1 << 50},
		{"go_memstats_heap_inuse_bytes", 1, 1 << 40},
		{"go_memstats_sys_bytes", 1 << 20, 1 << 40},
		{"go_memstats_next_gc_bytes", 1, 1 << 40},
		{"go_sched_gomaxprocs_threads", float64(runtime.GOMAXPROCS(0)), float64(runtime.GOMAXPROCS(0))},
		{"go_info", 1, 1},
	}
	if runtime.GOOS == "linux" {
		checks = append(checks, []struct {
			name     string
			min, max float64
		}{
			{"process_resident_memory_bytes", 1 << 20, 1 << 40},
			{"process_virtual_memory_bytes", 1 << 20, 1 << 50},
			{"process_cpu_seconds_total", 0, 1e6},
			{"process_open_fds", 3, 1e6},
			{"process_max_fds", 3, 1 << 40},
			{"process_start_time_seconds", 1.5e9, 1e10},
		}...)
	}
	for _, c := range checks {
		if v := value(c.name); v < c.min || v > c.max {
			t.Errorf("%s = %v, want in [%v, %v]", c.name, v, c.min, c.max)
		}
	}
	if got := fams["go_info"].GetMetric()[0].GetLabel()[0].GetValue(); got != runtime.Version() {
		t.Errorf("go_info version %q, want %q", got, runtime.Version())
	}
	if runtime.GOOS == "linux" {
		st, ok := readStat()
		if !ok || st.rss == 0 || st.start == 0 {
			t.Errorf("readStat of pid %d: %+v, %v", os.Getpid(), st, ok)
		}
	}
}
