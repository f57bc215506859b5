package main

// TEMPORARY (session 7, issue 10 measurements; not for merging as is): a
// node started with AMB_DEBUG_CPUPROFILE=DIR,START,DUR[,START,DUR...]
// writes a CPU profile of seconds START to START+DUR of its life to
// DIR/PID.cpuK.pprof for the K-th window (K from 1), each with
// DIR/PID.allocsK.pprof (what it allocated since it started) written when
// the window ends; with AMB_DEBUG_TRACE (same form) a runtime trace to
// DIR/PID.traceK. Used to see where 100 nodes starting together spend
// their CPU and what wakes an idle node.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

// debugProfiles starts the profiles the environment asks for and returns
// a function that stops them (at exit).
func debugProfiles() (stop func()) {
	born := time.Now()
	done := make(chan struct{})
	finished := make(chan struct{}, 2)
	n := 0
	for _, p := range []struct {
		env   string
		ext   string
		start func(w io.Writer) error
		stop  func(dir string, k int)
	}{
		{"AMB_DEBUG_CPUPROFILE", "cpu%d.pprof", pprof.StartCPUProfile, func(dir string, k int) {
			pprof.StopCPUProfile()
			if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d.allocs%d.pprof", os.Getpid(), k))); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}},
		{"AMB_DEBUG_TRACE", "trace%d", trace.Start, func(string, int) { trace.Stop() }},
	} {
		v := os.Getenv(p.env)
		if v == "" {
			continue
		}
		f := strings.Split(v, ",")
		var wins []float64
		for _, s := range f[1:] {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				wins = nil
				break
			}
			wins = append(wins, x)
		}
		if len(wins) == 0 || len(wins)%2 != 0 {
			fmt.Fprintf(os.Stderr, "ambassador: %s=%q: want DIR,START,DUR[,START,DUR...] (seconds)\n", p.env, v)
			continue
		}
		dir := f[0]
		n++
		go func() {
			defer func() { finished <- struct{}{} }()
			sec := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
			for k := 0; k < len(wins); k += 2 {
				select {
				case <-time.After(time.Until(born.Add(sec(wins[k])))):
				case <-done:
					return
				}
				out, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d.", os.Getpid())+fmt.Sprintf(p.ext, k/2+1)))
				if err != nil {
					fmt.Fprintf(os.Stderr, "ambassador: %s: %v\n", p.env, err)
					return
				}
				if err := p.start(out); err != nil {
					fmt.Fprintf(os.Stderr, "ambassador: %s: %v\n", p.env, err)
					out.Close()
					return
				}
				stopped := false
				select {
				case <-time.After(sec(wins[k+1])):
				case <-done:
					stopped = true
				}
				p.stop(dir, k/2+1)
				out.Close()
				if stopped {
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		for range n {
			<-finished
		}
	}
}
