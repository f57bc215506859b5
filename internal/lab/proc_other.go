//go:build !linux

package lab

import (
	"os"
	"syscall"
)

// dieWithParent: the lab needs Linux network namespaces and skips
// elsewhere; this only lets the package compile.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// setpgid does nothing: process groups are Unix's, and the lab never runs
// here.
func setpgid(*syscall.SysProcAttr) {}

// killGroup kills only pid itself; see setpgid.
func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}
