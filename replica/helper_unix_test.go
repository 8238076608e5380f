//go:build unix

package replica

import "syscall"

func init() {
	setsidAttr = func() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
}
