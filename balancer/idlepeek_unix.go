//go:build linux || darwin || freebsd || netbsd || openbsd

package balancer

import (
	"net"
	"syscall"
)

// idleAlive reports whether an idle connection to a backend is still
// open: a peek that does not wait finds nothing to read. The backend
// closing it (its own keep-alive timeout, or its process gone) shows as
// end of file; bytes where no response is due mean it is out of step.
// Either way it is not reused: a request written to it would be lost.
// net/http's Transport learns the same from a read it keeps pending on
// every idle connection, in a goroutine of its own.
func idleAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
