//go:build unix

package rsplibtest

import (
	"os/exec"
	"syscall"
)

// ownGroup makes cmd the leader of a process group of its own, so that
// killGroup ends it with whatever it started.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process group that pid leads.
func killGroup(pid int) { syscall.Kill(-pid, syscall.SIGKILL) }
