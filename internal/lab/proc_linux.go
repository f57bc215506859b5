package lab

import "syscall"

// dieWithParent makes a lab process get SIGKILL when the test binary dies,
// so a crashed test leaves no server running.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
