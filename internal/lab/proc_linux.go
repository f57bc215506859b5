package lab

import "syscall"

// dieWithParent makes a lab process get SIGKILL when the test binary dies,
// so a crashed test leaves no server running.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }

// setpgid puts the process in a process group of its own, so killGroup
// also reaches what it starts (a browser's helpers).
func setpgid(a *syscall.SysProcAttr) { a.Setpgid = true }

// killGroup sends SIGKILL to the process group led by pid.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
