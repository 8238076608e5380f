//go:build linux || darwin || freebsd || netbsd || openbsd

package balancer

import (
	"net"
	"syscall"
)

// idlePeeker tells whether an idle connection to a backend is still
// open: a peek that does not wait finds nothing to read. The backend
// closing it (its own keep-alive timeout, or its process gone) shows as
// end of file; bytes where no response is due mean it is out of step.
// Either way it is not reused: a request written to it would be lost.
// net/http's Transport learns the same from a read it keeps pending on
// every idle connection, in a goroutine of its own. It is made once per
// connection, so that a peek allocates nothing.
type idlePeeker struct {
	rc   syscall.RawConn
	fn   func(fd uintptr) bool
	open bool
}

func (p *idlePeeker) alive(c net.Conn) bool {
	if p.fn == nil {
		sc, ok := c.(syscall.Conn)
		if !ok {
			return true
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		p.rc = rc
		p.fn = func(fd uintptr) bool {
			var b [1]byte
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			p.open = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
			return true
		}
	}
	p.open = false
	err := p.rc.Read(p.fn)
	return err == nil && p.open
}
