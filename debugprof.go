package main

// TEMPORARY (session 7, issue 10 measurements; not for merging as is): a
// node started with AMB_DEBUG_CPUPROFILE=DIR,START,DUR writes a CPU
// profile of seconds START to START+DUR of its life to DIR/PID.cpu.pprof,
// and with AMB_DEBUG_TRACE=DIR,START,DUR a runtime trace to
// DIR/PID.trace. The CPU profile comes with DIR/PID.allocs.pprof, written
// when it stops. Used to see where 100 nodes starting together spend
// their CPU and what wakes an idle node.

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

// debugProfiles starts the profiles the environment asks for and returns
// a function that stops them early (at exit).
func debugProfiles() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{}, 2)
	n := 0
	for _, p := range []struct {
		env   string
		ext   string
		start func(f *os.File) error
		stop  func()
	}{
		{"AMB_DEBUG_CPUPROFILE", "cpu.pprof", func(f *os.File) error { return pprof.StartCPUProfile(f) }, func() {
			pprof.StopCPUProfile()
			// And what was allocated since the start, for the same question.
			if f, err := os.Create(filepath.Join(strings.Split(os.Getenv("AMB_DEBUG_CPUPROFILE"), ",")[0], fmt.Sprintf("%d.allocs.pprof", os.Getpid()))); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}},
		{"AMB_DEBUG_TRACE", "trace", func(f *os.File) error { return trace.Start(f) }, trace.Stop},
	} {
		v := os.Getenv(p.env)
		if v == "" {
			continue
		}
		f := strings.Split(v, ",")
		if len(f) != 3 {
			fmt.Fprintf(os.Stderr, "ambassador: %s=%q: want DIR,START,DUR\n", p.env, v)
			continue
		}
		start, err1 := strconv.ParseFloat(f[1], 64)
		dur, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			fmt.Fprintf(os.Stderr, "ambassador: %s=%q: want DIR,START,DUR (seconds)\n", p.env, v)
			continue
		}
		path := filepath.Join(f[0], fmt.Sprintf("%d.%s", os.Getpid(), p.ext))
		n++
		go func() {
			defer func() { finished <- struct{}{} }()
			select {
			case <-time.After(time.Duration(start * float64(time.Second))):
			case <-done:
				return
			}
			out, err := os.Create(path)
			if err != nil {
				fmt.Fprintf(os.Stderr, "ambassador: %s: %v\n", p.env, err)
				return
			}
			defer out.Close()
			if err := p.start(out); err != nil {
				fmt.Fprintf(os.Stderr, "ambassador: %s: %v\n", p.env, err)
				return
			}
			select {
			case <-time.After(time.Duration(dur * float64(time.Second))):
			case <-done:
			}
			p.stop()
		}()
	}
	return func() {
		close(done)
		for range n {
			<-finished
		}
	}
}
