//go:build !unix

package rsplibtest

import (
	"os"
	"os/exec"
)

// ownGroup: there are no process groups to make here.
func ownGroup(*exec.Cmd) {}

// killGroup kills the process pid.
func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}
