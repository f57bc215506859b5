package mesh

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestParseStaticLoop: a pair whose target is its own listener would
// connect every accepted connection to itself again, and one client
// connection would open connections until the process runs out of file
// descriptors. Such a pair is refused; a target on another port or
// another host is not.
func TestParseStaticLoop(t *testing.T) {
	const loop = "would connect to itself"
	tests := []parseCase[Static]{
		{in: "6379=6379", wantErr: loop},
		{in: "127.0.0.1:6379=localhost:6379", wantErr: loop},
		{in: "localhost:6379=6379", wantErr: loop},
		{in: "0.0.0.0:6379=6379", wantErr: loop},
		{in: "0.0.0.0:6379=0.0.0.0:6379", wantErr: loop},
		{in: "[::]:6379=127.0.0.1:6379", wantErr: loop},
		{in: "[::1]:6379=[::1]:6379", wantErr: loop},
		{in: "6379=0.0.0.0:6379", wantErr: loop},
		{in: "[::1]:6379=[::]:6379", wantErr: loop},
		{in: "0.0.0.0:6379=[::1]:6379", want: Static{Listen: "0.0.0.0:6379", Target: "[::1]:6379"}},
		{in: "6380=6379", want: Static{Listen: "127.0.0.1:6380", Target: "127.0.0.1:6379"}},
		{in: "0.0.0.0:6379=10.1.2.3:6379", want: Static{Listen: "0.0.0.0:6379", Target: "10.1.2.3:6379"}},
		{in: "127.0.0.2:6379=6379", want: Static{Listen: "127.0.0.2:6379", Target: "127.0.0.1:6379"}},
	}
	runParseTable(t, tests, ParseStatic)
}

// TestRunStaticDuplicateListen: two pairs on one listen address cannot
// both be served; the command says so rather than silently serving the
// first and dropping the second.
func TestRunStaticDuplicateListen(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // return at once once the listeners are up
	pairs := []Static{{Listen: addr, Target: "127.0.0.1:1"}, {Listen: addr, Target: "127.0.0.1:2"}}
	err := RunStatic(ctx, pairs, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("RunStatic with %s twice: got %v, want an error naming it", addr, err)
	}
}
