package balancer

import (
	"crypto/tls"
	"net"
)

// tlsListener returns ln, handshaking TLS over each connection when
// Options.TLS is set. The TLS layer goes outside the connection tracking,
// as http.Server wants a *tls.Conn to negotiate HTTP/2 by ALPN.
func (b *Balancer) tlsListener(ln net.Listener) net.Listener {
	if b.cfg().TLS == nil {
		return ln
	}
	cfg := b.cfg().TLS.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return tls.NewListener(ln, cfg)
}

// netConn returns the connection under c's TLS layer, if it has one.
func netConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}
