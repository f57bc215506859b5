//go:build !unix

package promtext

// maxFDs: no RLIMIT_NOFILE here (the process collector reads /proc, so
// it exports nothing on these systems anyway).
func maxFDs() (float64, bool) { return 0, false }
