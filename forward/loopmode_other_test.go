//go:build !linux

package forward

import "testing"

// useLoopMode asks for the event loop on or off. Off Linux there is none:
// every stream takes the goroutine path, so a test that wants the loop is
// skipped.
func useLoopMode(t *testing.T, on bool) {
	t.Helper()
	if on {
		t.Skip("no event loop off Linux")
	}
}
