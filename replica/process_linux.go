package replica

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	// Pdeathsig is delivered when the thread that forked the child exits;
	// Go only ends threads whose goroutine locked them and returned, which
	// this program never does.
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
