package testutil

import (
	"fmt"
	"net"
	"syscall"
	"time"
)

// NonReadingGet sends GET path to addr on a connection of its own, with a
// small receive buffer, and never reads the answer: a slow reader. The
// connection stays open until the caller closes it or the server does.
func NonReadingGet(addr, path string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		return smallReceiveBuffer(c)
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
