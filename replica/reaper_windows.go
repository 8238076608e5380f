package replica

import "syscall"

// reaperSupported is false: the tracker records nothing here (see
// procs_windows.go), so a reaper would have nothing to sweep.
const reaperSupported = false

// reaperAttr gives the reaper a process group of its own, out of reach of
// the console's Ctrl-C.
func reaperAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}
