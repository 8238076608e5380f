package balancer

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// With Options.UpstreamH2C the transport speaks HTTP/2 over cleartext with
// prior knowledge (h2c) to the backends, as gRPC servers expect: calls are
// multiplexed as streams over one connection per backend, and another is
// opened only when a backend's SETTINGS_MAX_CONCURRENT_STREAMS is reached.
// Everything that counts requests (MaxInflight, least_conn, the queue)
// counts attempts, that is streams, never connections. Clients may speak
// HTTP/1.1 or HTTP/2 either way: the transport translates.

// useH2C makes t speak h2c, and only h2c, to http:// URLs.
func useH2C(t *http.Transport) {
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
}

// errUpgradeOverH2C is the answer to an upgrade request (WebSocket) when
// the backends are spoken to over h2c: HTTP/2 has no Upgrade, and the
// transport would refuse the request as malformed, which would look like
// a backend failing.
const errUpgradeOverH2C = "upgrade requests (WebSocket) cannot be passed to replicas over h2c; run with --upstream-protocol http1 to pass them"

// refuseUpgradeOverH2C answers 501 to an upgrade request when the backends
// are spoken to over h2c, and reports whether it did. An upgrade to h2c
// itself is the front end's business, not a tunnel to a backend.
func (b *Balancer) refuseUpgradeOverH2C(w http.ResponseWriter, r *http.Request) bool {
	if !b.cfg().UpstreamH2C || !isUpgrade(r) || strings.EqualFold(r.Header.Get("Upgrade"), "h2c") {
		return false
	}
	writeError(w, http.StatusNotImplemented, errUpgradeOverH2C)
	return true
}

// The opposite mistake, HTTP/1.1 spoken to a replica that speaks only h2c
// (a gRPC server, run without --upstream-protocol h2c), shows as a reset:
// the replica reads what is not an HTTP/2 preface and closes the
// connection. Retried, it would look like a poison request; so a backend
// that reset a connection and has never answered over HTTP/1.1 is sent an
// HTTP/2 preface, once, and one that answers it with SETTINGS is known to
// speak h2c, and the request is answered 502 naming --upstream-protocol.

// What a backend was found to speak (Backend.protocol).
const (
	protocolUnknown int32 = iota
	protocolH2C           // it answered an HTTP/2 preface with SETTINGS
	protocolOther         // it did not
)

// wrongProtocolText is the answer to a request the backend be, which
// speaks only h2c, was sent in HTTP/1.1.
func wrongProtocolText(be *Backend) string {
	return be.Name + " reset the connection and answers HTTP/2 over cleartext (h2c), but has never answered HTTP/1.1, which the proxy speaks to it: run with --upstream-protocol h2c"
}

// speaksOnlyH2C reports whether be, which reset an HTTP/1.1 connection
// before responding, speaks only h2c: it has never answered over HTTP/1.1
// and it answers an HTTP/2 preface with SETTINGS. The preface is sent once
// per backend; the answer is kept.
func (b *Balancer) speaksOnlyH2C(ctx context.Context, be *Backend) bool {
	if b.cfg().UpstreamH2C || be.spokeHTTP1.Load() {
		return false
	}
	switch be.protocol.Load() {
	case protocolH2C:
		return true
	case protocolOther:
		return false
	}
	p := probeH2C(ctx, be.Addr, b.cfg().ConnectTimeout)
	if p != protocolUnknown {
		be.protocol.Store(p)
	}
	return p == protocolH2C
}

// h2Preface is what an HTTP/2 client sends first: the connection preface
// and an empty SETTINGS frame.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"

// probeH2C sends an HTTP/2 preface to addr and tells from the first frame
// header of the answer, within timeout, whether it speaks h2c; unknown
// when it cannot tell (no connection, or no answer in time).
func probeH2C(ctx context.Context, addr string, timeout time.Duration) int32 {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return protocolUnknown
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, h2Preface); err != nil {
		return protocolUnknown
	}
	var head [9]byte // a frame header: length (3), type (1), flags (1), stream (4)
	n, err := io.ReadFull(conn, head[:])
	switch {
	case n == len(head) && head[3] == 0x4 && bytes.Equal(head[5:], []byte{0, 0, 0, 0}):
		return protocolH2C
	case n > 0 || err == io.EOF:
		return protocolOther // an answer that is not HTTP/2, or none at all
	default:
		return protocolUnknown
	}
}
