//go:build unix

package replica

import "syscall"

// reaperSupported: the tracker records process groups (and, on Linux,
// cgroups) for the reaper to sweep.
const reaperSupported = true

// reaperAttr gives the reaper a process group of its own, so that a Ctrl-C
// at the terminal (SIGINT to the foreground group) does not reach it, and
// no parent-death signal: it must outlive the supervisor.
func reaperAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
