//go:build !unix

package health

import "os/exec"

// newProcessGroup does nothing where there are no Unix process groups.
func newProcessGroup(*exec.Cmd) {}

// killProcessGroup kills the command's process only: children it started
// may outlive an exec check here.
func killProcessGroup(cmd *exec.Cmd) error { return cmd.Process.Kill() }
