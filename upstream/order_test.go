package upstream

import (
	"math"
	"slices"
	"testing"
)

func TestOrderPriorities(t *testing.T) {
	in := []Target{
		{Addr: "c:1", Priority: 30, Weight: 100},
		{Addr: "a1:1", Priority: 10, Weight: 0},
		{Addr: "b:1", Priority: 20, Weight: 5},
		{Addr: "a2:1", Priority: 10, Weight: 65535},
		{Addr: "a3:1", Priority: 10, Weight: 1},
	}
	orig := slices.Clone(in)
	for range 1000 {
		got := Order(in)
		if !slices.Equal(sortedTargets(got), sortedTargets(in)) {
			t.Fatalf("got %v, want a permutation of %v", got, in)
		}
		for i := 1; i < len(got); i++ {
			if got[i-1].Priority > got[i].Priority {
				t.Fatalf("priority %d before %d: %v", got[i-1].Priority, got[i].Priority, got)
			}
		}
	}
	if !slices.Equal(in, orig) {
		t.Errorf("Order modified its input: got %v, want %v", in, orig)
	}
	if got := Order(nil); len(got) != 0 {
		t.Errorf("Order(nil): got %v, want empty", got)
	}
}

// TestOrderWeights checks, over many runs, how often each target comes
// first; the bounds are loose (≈10 standard deviations) so the test never
// flakes.
func TestOrderWeights(t *testing.T) {
	const runs = 20000
	tests := []struct {
		name    string
		weights []uint16
		want    []float64 // share of runs each comes first
		tol     float64
	}{
		{"proportional", []uint16{10, 30, 60}, []float64{0.1, 0.3, 0.6}, 0.035},
		{"all zero is uniform", []uint16{0, 0, 0, 0}, []float64{0.25, 0.25, 0.25, 0.25}, 0.035},
		{"zero gets a small chance", []uint16{0, 100}, []float64{1.0 / 10001, 1 - 1.0/10001}, 0.002},
		{"single", []uint16{7}, []float64{1}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in []Target
			for i, w := range tc.weights {
				in = append(in, Target{Addr: string(rune('a' + i)), Weight: w})
			}
			first := make(map[string]int)
			for range runs {
				got := Order(in)
				if len(got) != len(in) {
					t.Fatalf("got %d targets, want %d", len(got), len(in))
				}
				first[got[0].Addr]++
			}
			for i, want := range tc.want {
				share := float64(first[in[i].Addr]) / runs
				if math.Abs(share-want) > tc.tol {
					t.Errorf("target with weight %d first in %.4f of runs, want %.4f±%.3f", tc.weights[i], share, want, tc.tol)
				}
			}
		})
	}
}

// TestOrderZeroWeightNotStarved checks a weight-0 target still comes first
// sometimes next to weighted ones (RFC 2782's "very small chance").
func TestOrderZeroWeightNotStarved(t *testing.T) {
	in := []Target{{Addr: "zero", Weight: 0}, {Addr: "one", Weight: 1}}
	n := 0
	for range 20000 {
		if Order(in)[0].Addr == "zero" {
			n++
		}
	}
	// Expected ≈ 20000/101 ≈ 198.
	if n < 100 || n > 320 {
		t.Errorf("weight 0 first %d times in 20000, want about 198", n)
	}
}
