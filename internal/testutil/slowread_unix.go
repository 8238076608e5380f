//go:build unix

package testutil

import "syscall"

// smallReceiveBuffer sets c's receive buffer to 16 KiB before it
// connects, so that a client that reads nothing fills it, and the
// server's send buffer, soon.
func smallReceiveBuffer(c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
	}); err != nil {
		return err
	}
	return serr
}
