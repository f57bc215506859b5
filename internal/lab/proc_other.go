//go:build !linux

package lab

import "syscall"

// dieWithParent: the lab needs Linux network namespaces and skips
// elsewhere; this only lets the package compile.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
