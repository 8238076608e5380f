//go:build unix

package daemon

import "syscall"

// detachAttr puts the background instance in a session of its own, so
// that closing the terminal does not signal it.
func detachAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
