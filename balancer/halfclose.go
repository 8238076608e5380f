package balancer

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// net/http cancels a request's context as soon as a read of its connection
// fails, end of stream included. But a client that sent its whole request
// and then shut down its writing half (as `printf ... | nc` does) is still
// waiting for the answer: HTTP allows it, and HAProxy serves such requests
// unless told otherwise (option abortonclose). The proxy therefore tracks
// how each connection's reading ended, and gives up on a request only when
// the connection broke (a reset, or the server closing it), not when the
// client merely sent FIN. A client that closed the whole connection looks
// the same as one that half-closed it, until the answer is written; its
// request is served all the same.

// trackingListener wraps the connections it accepts in trackedConns.
type trackingListener struct{ net.Listener }

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c}, nil
}

// trackedConn records whether its reading ended in a clean end of stream.
// It also counts the memory its responses hold ahead of the client
// (spool.go), which Options.ResponseBuffer bounds per connection.
type trackedConn struct {
	net.Conn
	eof   atomic.Bool  // the last failed read was the end of stream (FIN)
	ahead atomic.Int64 // bytes of memory held by the connection's spools
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		// Recorded before Read returns, so before net/http cancels the
		// request's context because of it.
		c.eof.Store(errors.Is(err, io.EOF))
	}
	return n, err
}

// CloseWrite passes a half-close through, for upgraded connections.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

type connKey struct{}

// connContext is the server's ConnContext: it lets a request find its
// connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := netConn(c).(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// requestContext returns the context to serve r under once its body has
// been read: unlike r's own, it is not cancelled when an HTTP/1 client
// half-closes its connection. An HTTP/2 stream is ended by a reset or its
// own end flag, never by a half-close, so the end of an HTTP/2 connection
// (a gRPC client gone) cancels its calls at once. The caller must call
// cancel.
func requestContext(r *http.Request) (ctx context.Context, cancel func()) {
	parent := r.Context()
	tc, _ := parent.Value(connKey{}).(*trackedConn)
	if tc == nil || r.ProtoMajor >= 2 {
		return context.WithCancel(parent)
	}
	ctx, cancelCtx := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		if !tc.eof.Load() {
			cancelCtx()
		}
	})
	return ctx, func() { stop(); cancelCtx() }
}
