// Package promtext serves metrics in the Prometheus text exposition format
// (version 0.0.4) from collectors that compute constant values at scrape
// time, plus a small Go runtime and process collector.
//
// Why not the official client library: the node only ever exports constant
// metrics read from its own counters at scrape time, and the client pulled
// protobuf, procfs and expfmt into the binary: 2.5 MB of code and tables,
// of which about 2.2 MiB were resident in every idle node (issue 10's 15 MiB
// target). The format is small and stable:
// https://prometheus.io/docs/instrumenting/exposition_formats/
package promtext

import (
	"bufio"
	"cmp"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// ValueType is the type of a single-value metric.
type ValueType int

const (
	CounterValue ValueType = iota + 1
	GaugeValue
)

func (t ValueType) String() string {
	if t == CounterValue {
		return "counter"
	}
	return "gauge"
}

// Desc names a metric family: its name, help text and label names.
type Desc struct {
	name, help string
	labels     []string // sorted by name, as the official client writes them
	from       []int    // labels[i] is the caller's label from[i]
}

// NewDesc returns the description of a family. Names and label names are
// the caller's constants and are not validated.
func NewDesc(name, help string, labels []string) *Desc {
	d := &Desc{name: name, help: help, from: make([]int, len(labels))}
	for i := range d.from {
		d.from[i] = i
	}
	slices.SortFunc(d.from, func(a, b int) int { return cmp.Compare(labels[a], labels[b]) })
	for _, i := range d.from {
		d.labels = append(d.labels, labels[i])
	}
	return d
}

// Metric is one sample (counter or gauge) or one histogram of a family.
type Metric struct {
	desc   *Desc
	typ    string // counter, gauge or histogram
	labels []string
	value  float64
	// histogram only: count of observations, their sum, and the
	// cumulative count at each upper bound.
	count   uint64
	buckets map[float64]uint64
}

// MustNewConstMetric returns a counter or gauge sample. It panics when the
// number of label values differs from the Desc's label names, a
// programming error.
func MustNewConstMetric(d *Desc, t ValueType, v float64, labels ...string) Metric {
	return Metric{desc: d, typ: t.String(), labels: d.order(labels), value: v}
}

// MustNewConstHistogram returns a histogram: count observations with sum
// sum, and buckets mapping each upper bound to the cumulative count of
// observations at most that bound (+Inf is count). It panics as
// MustNewConstMetric does.
func MustNewConstHistogram(d *Desc, count uint64, sum float64, buckets map[float64]uint64, labels ...string) Metric {
	return Metric{desc: d, typ: "histogram", labels: d.order(labels), value: sum, count: count, buckets: buckets}
}

// order returns the caller's label values in the order of d.labels.
func (d *Desc) order(values []string) []string {
	if len(values) != len(d.labels) {
		panic(fmt.Sprintf("promtext: %s has %d label names, got %d values", d.name, len(d.labels), len(values)))
	}
	out := make([]string, len(values))
	for i, j := range d.from {
		out[i] = values[j]
	}
	return out
}

// Collector produces metrics at scrape time by calling add for each one.
type Collector interface {
	Collect(add func(Metric))
}

// CollectorFunc adapts a function to Collector.
type CollectorFunc func(add func(Metric))

// Collect calls f.
func (f CollectorFunc) Collect(add func(Metric)) { f(add) }

// ContentType is the media type of the text format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves every collector's metrics, families sorted by name and
// each family's metrics by label values, as the official client does.
func Handler(cs ...Collector) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ContentType)
		bw := bufio.NewWriter(w)
		Write(bw, cs...)
		bw.Flush() // an error is the client's gone: nothing to tell it
	})
}

// Write writes every collector's metrics in the text format.
func Write(w *bufio.Writer, cs ...Collector) {
	var ms []Metric
	for _, c := range cs {
		c.Collect(func(m Metric) { ms = append(ms, m) })
	}
	slices.SortStableFunc(ms, func(a, b Metric) int {
		if c := cmp.Compare(a.desc.name, b.desc.name); c != 0 {
			return c
		}
		return slices.Compare(a.labels, b.labels)
	})
	for i, m := range ms {
		d := m.desc
		if i == 0 || ms[i-1].desc.name != d.name {
			w.WriteString("# HELP " + d.name + " ")
			w.WriteString(helpEscaper.Replace(d.help))
			w.WriteString("\n# TYPE " + d.name + " " + m.typ + "\n")
		}
		if m.typ != "histogram" {
			sample(w, d.name, d.labels, m.labels, "", "", m.value)
			continue
		}
		bounds := make([]float64, 0, len(m.buckets))
		for b := range m.buckets {
			if !math.IsInf(b, +1) {
				bounds = append(bounds, b)
			}
		}
		slices.Sort(bounds)
		for _, b := range bounds {
			sample(w, d.name+"_bucket", d.labels, m.labels, "le", formatFloat(b), float64(m.buckets[b]))
		}
		sample(w, d.name+"_bucket", d.labels, m.labels, "le", "+Inf", float64(m.count))
		sample(w, d.name+"_sum", d.labels, m.labels, "", "", m.value)
		sample(w, d.name+"_count", d.labels, m.labels, "", "", float64(m.count))
	}
}

// sample writes one line: name{labels,extra="value"} v.
func sample(w *bufio.Writer, name string, names, values []string, extra, extraValue string, v float64) {
	w.WriteString(name)
	if len(names) > 0 || extra != "" {
		w.WriteByte('{')
		for i, n := range names {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(n + `="` + labelEscaper.Replace(values[i]) + `"`)
		}
		if extra != "" {
			if len(names) > 0 {
				w.WriteByte(',')
			}
			w.WriteString(extra + `="` + extraValue + `"`)
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, +1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
