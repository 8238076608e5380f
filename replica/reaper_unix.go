//go:build unix

package replica

import "syscall"

// reaperAttr gives the reaper a process group of its own, so that a Ctrl-C
// at the terminal (SIGINT to the foreground group) does not reach it, and
// no parent-death signal: it must outlive the supervisor.
func reaperAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
