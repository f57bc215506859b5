//go:build !unix

package gossip

import "time"

// processCPU returns false: no getrusage here.
func processCPU() (time.Duration, bool) { return 0, false }
