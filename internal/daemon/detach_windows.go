package daemon

import "syscall"

const detachedProcess = 0x00000008 // DETACHED_PROCESS

func detachAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP | detachedProcess}
}
