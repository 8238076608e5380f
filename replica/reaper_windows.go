package replica

import "syscall"

// reaperAttr gives the reaper a process group of its own, out of reach of
// the console's Ctrl-C.
func reaperAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}
