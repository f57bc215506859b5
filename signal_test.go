package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestHandleSignals: the first SIGINT or SIGTERM starts the graceful
// leave; a second one exits at once, unless it comes within signalEcho of
// the first: GNU timeout sends its signal to the command and then to its
// whole process group, so `timeout 60 ambassador` gets two within
// microseconds and must still leave gracefully.
func TestHandleSignals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		after    []time.Duration // when each signal arrives, from the first
		canceled bool
		exited   bool
	}{
		{"none", nil, false, false},
		{"one: graceful", []time.Duration{0}, true, false},
		{"timeout's echo: graceful", []time.Duration{0, 50 * time.Microsecond}, true, false},
		{"echo, then a real second: exit", []time.Duration{0, time.Microsecond, time.Second}, true, true},
		{"a second after a while: exit", []time.Duration{0, 2 * time.Second}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := make(chan os.Signal)
			done := make(chan struct{})
			returned := make(chan struct{})
			t0 := time.Unix(1000, 0)
			// Read only by handleSignals's goroutine, once per signal.
			calls := 0
			now := func() time.Time {
				calls++
				return t0.Add(tc.after[calls-1])
			}
			canceled, exited := false, false
			go func() {
				defer close(returned)
				handleSignals(sigs, done, func() { canceled = true }, now, func() { exited = true })
			}()
			for range tc.after {
				select {
				case sigs <- syscall.SIGTERM:
				case <-returned:
				}
			}
			close(done)
			<-returned
			if canceled != tc.canceled || exited != tc.exited {
				t.Errorf("canceled %v, exited %v; want %v, %v", canceled, exited, tc.canceled, tc.exited)
			}
		})
	}
}
