package replica

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// awaitExit returns once child pid, which nobody has waited for yet, has
// exited, so that the cmd.Wait after it reaps at once. It parks only the
// calling goroutine: it waits for the child's pidfd to become readable in
// the runtime's poller (epoll), where cmd.Wait alone would hold an OS thread
// in waitid for the child's whole life, one thread per replica (1,007
// threads at 1,000 replicas), each a task counted against a pids limit. It
// returns false, having waited for nothing, where pidfds are missing
// (Linux before 5.3, or a seccomp filter that refuses them); cmd.Wait then
// blocks a thread as before.
//
// The child cannot be reaped by anyone else meanwhile, so its pid cannot
// name another process when pidfd_open is called.
func awaitExit(pid int) bool {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.EINVAL) { // PIDFD_NONBLOCK is Linux 5.10's
		if fd, err = unix.PidfdOpen(pid, 0); err == nil {
			err = unix.SetNonblock(fd, true)
		}
	}
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		return false
	}
	// A non-blocking descriptor given to os.NewFile joins the poller.
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var waitErr error
	err = rc.Read(func(fd uintptr) bool {
		// WNOWAIT: look without reaping, which is cmd.Wait's to do.
		var info unix.Siginfo
		waitErr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		switch {
		case errors.Is(waitErr, unix.EAGAIN) || errors.Is(waitErr, unix.EINTR):
			return false
		case waitErr != nil:
			return true // cmd.Wait will say what is wrong
		}
		return info.Signo != 0 // zero: not exited yet
	})
	return err == nil
}
