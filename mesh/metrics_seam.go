package mesh

import "github.com/ambassador-mesh/ambassador/forward"

// failureReasons are the reason label values of
// ambassador_connection_failures_total, always all exported.
var failureReasons = []string{"dial", "no_instance", "handshake", "stream", "idle_timeout", "half_close_timeout"}

// listenerExtra adds the counters of ls that are not in every version of
// forward.ListenerStatus.
func listenerExtra(ls forward.ListenerStatus, retries *uint64, fail map[string]uint64) {}

type connectHistogram struct {
	Service string
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

func (n *Node) connectHistograms() []connectHistogram { return nil }

type handoffCount struct {
	service, result string
	count           uint64
}

func (n *Node) handoffCounts() []handoffCount { return nil }
