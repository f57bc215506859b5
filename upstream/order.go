package upstream

import (
	"cmp"
	"math/rand/v2"
	"slices"
)

// zeroWeightShare is how much more likely a weight-1 target is picked than
// a weight-0 one. RFC 2782 asks that weight-0 records get "a very small
// chance" when others have weight; a group where every weight is 0 is
// shuffled uniformly.
const zeroWeightShare = 100

// Order returns a fresh RFC 2782 ordering of targets: ascending Priority,
// and within one priority a weighted random order, in which a target comes
// first with probability proportional to its Weight (a weight-0 target
// counts as 1/100 of weight 1). Each address counts on its own, so an SRV
// host with two addresses draws twice the share of a one-address host of
// the same weight. Order does not modify targets; it returns a new slice
// the caller owns. It is safe for concurrent use.
func Order(targets []Target) []Target {
	out := slices.Clone(targets)
	slices.SortStableFunc(out, func(a, b Target) int { return cmp.Compare(a.Priority, b.Priority) })
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].Priority == out[i].Priority {
			j++
		}
		shuffleByWeight(out[i:j])
		i = j
	}
	return out
}

// Share is t's weight for picking among the targets of its priority: its
// SRV Weight times 100, and 1 for weight 0, so that a weight-0 target gets
// the "very small chance" RFC 2782 asks for when others have weight, and
// a group of weight-0 targets is shared evenly.
func (t Target) Share() int {
	if t.Weight == 0 {
		return 1
	}
	return int(t.Weight) * zeroWeightShare
}

// shuffleByWeight is the selection loop of RFC 2782: repeatedly pick one
// of the remaining targets with probability weight/sum and move it to the
// front of what is left.
func shuffleByWeight(g []Target) {
	total := 0
	for _, t := range g {
		total += t.Share()
	}
	for n := 0; n < len(g)-1; n++ {
		x := rand.IntN(total)
		k := n
		for acc := g[k].Share(); acc <= x; acc += g[k].Share() {
			k++
		}
		g[n], g[k] = g[k], g[n]
		total -= g[n].Share()
	}
}
