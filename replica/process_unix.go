//go:build unix

package replica

import (
	"os"
	"syscall"
)

func terminateGroup(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGTERM) }

func killGroup(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) }

func signalName(ps *os.ProcessState) string {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return ""
	}
	return ws.Signal().String()
}

func killPid(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

func termPid(pid int) { _ = syscall.Kill(pid, syscall.SIGTERM) }
