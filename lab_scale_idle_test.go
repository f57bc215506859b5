package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// arpStats are the kernel's neighbour (ARP) table counters, summed over
// CPUs: the table is one for all namespaces (LAB.md).
type arpStats struct {
	entries, allocs, destroys uint64
}

// readARPStats reads /proc/net/stat/arp_cache; ok is false where it does
// not exist.
func readARPStats() (arpStats, bool) {
	b, err := os.ReadFile("/proc/net/stat/arp_cache")
	if err != nil {
		return arpStats{}, false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var s arpStats
	for i, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 3 {
			return arpStats{}, false
		}
		v := make([]uint64, 3)
		for k := range v {
			if v[k], err = strconv.ParseUint(f[k], 16, 64); err != nil {
				return arpStats{}, false
			}
		}
		if i == 0 {
			s.entries = v[0] // the table's count, the same on every line
		}
		s.allocs += v[1]
		s.destroys += v[2]
	}
	return s, true
}

// busiestNodes names the n nodes with the most CPU, busiest first, as
// "h12 0.23" pairs: the busiest node sets the idle figure against the
// target, and whether it is one role or any host is the next question.
func (c *scaleCluster) busiestNodes(cpus []float64, n int) string {
	idx := make([]int, len(cpus))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case cpus[a] > cpus[b]:
			return -1
		case cpus[a] < cpus[b]:
			return 1
		}
		return 0
	})
	var out []string
	for _, i := range idx[:min(n, len(idx))] {
		out = append(out, fmt.Sprintf("%s %.2f", c.hosts[i].Name, cpus[i]))
	}
	return strings.Join(out, ", ")
}
