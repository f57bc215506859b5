package mesh

import "github.com/ambassador-mesh/ambassador/internal/svcname"

// byName copies a map keyed by service name (Config.Balance, Config.Checks)
// into one keyed by the name's string, lower case, as the node's own state
// and the routes key it. The names were checked where they entered (a Name
// comes from svcname.Parse).
func byName[V any](m map[svcname.Name]V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k.Lower().String()] = v
	}
	return out
}
