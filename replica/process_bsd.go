//go:build unix && !linux

package replica

import "syscall"

// Without a parent-death signal on these systems a replica outlives a
// supervisor killed with SIGKILL; a graceful stop still reaches its group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
