package balancer

import (
	"context"
	"io"
	"net"
)

// upstreamConn is a connection to a backend that writes a request body
// held in memory chunks with writev, straight from the chunks. The
// transport hands a body it does not know to be in memory to the
// connection's ReadFrom, as an io.LimitedReader of the Content-Length;
// net.TCPConn's own ReadFrom would copy it through a fresh 32 KiB buffer,
// a write system call for each 32 KiB. Everything else is the TCP
// connection's, CloseWrite (half-close of upgraded connections) and its
// splice included.
type upstreamConn struct{ *net.TCPConn }

func (c upstreamConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if cr, ok := lr.R.(*chunkReader); ok {
			n, err := cr.writeTo(c.TCPConn, lr.N)
			lr.N -= n
			return n, err
		}
	}
	return c.TCPConn.ReadFrom(r)
}

// dialUpstream returns d's DialContext, its TCP connections made
// upstreamConns.
func dialUpstream(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			return upstreamConn{tc}, nil
		}
		return c, err
	}
}
