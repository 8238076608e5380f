//go:build darwin || freebsd || linux

package control

import (
	"fmt"
	"net"
	"syscall"
)

// peerUID returns the uid of the process at the other end of a Unix
// socket connection, as the kernel recorded it at connect.
func peerUID(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("%T is not a Unix socket connection", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var uid int
	var credErr error
	if err := raw.Control(func(fd uintptr) { uid, credErr = socketPeerUID(int(fd)) }); err != nil {
		return 0, err
	}
	return uid, credErr
}
