package main

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// TestForwardUsage: `ambassador forward` refuses, as bad usage naming the
// pair or the flag, what it would otherwise run wrongly. The context is
// canceled, so a forwarder that starts returns at once (with no usage
// error) instead of running.
func TestForwardUsage(t *testing.T) {
	p := strconv.Itoa(testutil.FreePort(t))
	q := strconv.Itoa(testutil.FreePort(t))
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" = no usage error
	}{
		{name: "two pairs", args: []string{p + "=10.0.0.5:6379", q + "=10.0.0.6:6379"}},
		// The second pair used to be dropped without a word.
		{name: "one listen address twice", args: []string{"127.0.0.1:" + p + "=10.0.0.5:6379", p + "=10.0.0.6:6379"},
			wantErr: `forward: mesh: forward: 127.0.0.1:` + p + ` is given twice (to 10.0.0.5:6379 and to 10.0.0.6:6379)`},
		{name: "localhost and 127.0.0.1 are one address", args: []string{"localhost:" + p + "=10.0.0.5:6379", p + "=10.0.0.6:6379"},
			wantErr: `is given twice`},
		// A connection would be forwarded to the listener itself, again
		// and again, until the process ran out of file descriptors.
		{name: "target is the listen address", args: []string{p + "=127.0.0.1:" + p},
			wantErr: `forward: "` + p + `=127.0.0.1:` + p + `": target 127.0.0.1:` + p + ` is this forwarder's own listener`},
		{name: "wildcard listener over its loopback target", args: []string{"0.0.0.0:" + p + "=localhost:" + p},
			wantErr: `is this forwarder's own listener`},
		// It used to be exit 1: "mesh: forward: config: DrainTimeout -1s must be >= 0".
		{name: "negative drain timeout", args: []string{"--drain-timeout", "-1s", p + "=10.0.0.5:6379"},
			wantErr: "--drain-timeout -1s is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			// No drain unless the case sets one: a flag given twice
			// is itself bad usage.
			args := []string{"ambassador", "forward"}
			if !slices.Contains(tc.args, "--drain-timeout") {
				args = append(args, "--drain-timeout", "0")
			}
			err := newApp(io.Discard, io.Discard).RunContext(ctx, append(args, tc.args...))
			var ue usageError
			switch {
			case tc.wantErr == "" && errors.As(err, &ue):
				t.Fatalf("got usage error %q, want none", err)
			case tc.wantErr != "" && (!errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want a usage error containing %q", err, tc.wantErr)
			}
		})
	}
}
