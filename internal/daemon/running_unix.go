//go:build unix && !linux

package daemon

import (
	"errors"
	"syscall"
)

// processRunning returns a function reporting whether process pid still
// exists (signal 0 reaches it, or reaches a process this user may not
// signal).
func processRunning(pid int) func() bool {
	return func() bool {
		err := syscall.Kill(pid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
}
