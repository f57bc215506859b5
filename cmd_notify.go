package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/ambassador-mesh/ambassador/internal/sdnotify"
)

// notifySystemd tells systemd (Type=notify) READY=1 once the node runs and
// STOPPING=1 as soon as shutdown begins (a signal cancels ctx) or the node
// ends. The returned stop waits for its goroutine; call it when the node
// has returned. Without $NOTIFY_SOCKET it does nothing.
func notifySystemd(ctx context.Context, ready <-chan struct{}, node string, log *slog.Logger) (stop func()) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	send := func(state string) {
		if _, err := sdnotify.Notify(state); err != nil {
			log.Warn("cannot notify systemd", "state", state, "err", err)
		}
	}
	go func() {
		defer close(done)
		select {
		case <-ready:
			send(sdnotify.Ready + "\nSTATUS=node " + node + " running")
		case <-ctx.Done():
		}
		<-ctx.Done()
		send(sdnotify.Stopping)
	}()
	return func() { cancel(); <-done }
}
