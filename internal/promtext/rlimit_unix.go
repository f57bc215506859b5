//go:build unix

package promtext

import "syscall"

// maxFDs is the soft limit on open file descriptors.
func maxFDs() (float64, bool) {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0, false
	}
	return float64(lim.Cur), true
}
