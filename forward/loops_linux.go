//go:build linux

package forward

import (
	"fmt"
	"log/slog"
	"strconv"
)

// maxLoopsEnv bounds AMBASSADOR_FORWARD_LOOPS: each loop is a goroutine,
// an epoll instance and an eventfd per Proxy or Server, so a typo such as
// 20000 must not start twenty thousand of them.
const maxLoopsEnv = 256

// loopsFrom returns the number of event loops per Proxy or Server: env,
// the value of AMBASSADOR_FORWARD_LOOPS, when set to an integer from 1 to
// maxLoopsEnv, else def. An empty env is the default without an error;
// any other value that is not such an integer is ignored, with an error
// that says why for the caller to log.
func loopsFrom(env string, def int) (int, error) {
	if env == "" {
		return def, nil
	}
	n, err := strconv.Atoi(env)
	if err != nil || n < 1 || n > maxLoopsEnv {
		return def, fmt.Errorf("forward: AMBASSADOR_FORWARD_LOOPS %q is not an integer from 1 to %d; using %d loops", env, maxLoopsEnv, def)
	}
	return n, nil
}

// loopsFromEnv is loopsFrom that logs the error at Warn on the default
// logger: it runs as the package starts, before main has a logger of its
// own, and a bad override must not stop a node.
func loopsFromEnv(env string, def int) int {
	n, err := loopsFrom(env, def)
	if err != nil {
		slog.Warn(err.Error())
	}
	return n
}
