package balancer

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// A response is read from its backend ahead of its client, as fast as the
// backend sends it, so that the backend's slot is given back as soon as it
// has sent the whole response, however slowly the client takes it: nginx's
// proxy_buffering with proxy_temp_path. What the client has not taken yet,
// its backlog, is held in memory, up to ResponseBuffer for all the
// responses of one client connection and within MaxBuffer, and past that in
// a file in BufferDir, within MaxDiskBuffer. Nothing is delayed: each read
// from the backend is handed to the client's copy at once, so a chunked
// response that streams (a Flask generator) still streams. When neither
// memory nor disk has room, the backend is read only as fast as the client
// takes it, as without read-ahead; the send timeout bounds how long a
// client that takes nothing can hold it so.
//
// Streams pass through as they arrive instead, holding their backend until
// they end: server-sent events, gRPC calls (server streaming stays live and
// its trailers follow), and any response the backend marks
// X-Accel-Buffering: no, nginx's convention. So does a response of
// minReadAhead or less, which gains nothing.

// minReadAhead is the largest response, by its Content-Length, passed
// through rather than read ahead. The proxy copies a response in 32 KiB
// reads, and the backend's slot is released when a read reaches the end of
// the body: a response that fits in one read is released before its first
// byte is written to the client anyway.
const minReadAhead = 32 << 10

// spool starts reading resp's body ahead of the client, and returns true,
// unless the response is to pass through as it arrives.
func (b *Balancer) spool(resp *http.Response, a *attempt) bool {
	noBuffering := takeNoBuffering(resp.Header)
	if noBuffering || b.cfg().ResponseBuffer == 0 || b.bufs.maxMem == 0 && b.bufs.maxDisk == 0 ||
		resp.ContentLength >= 0 && resp.ContentLength <= minReadAhead ||
		resp.Body == nil || resp.Body == http.NoBody || resp.Request.Method == http.MethodHead ||
		isStream(resp.Header.Get("Content-Type")) {
		return false
	}
	s := &spool{
		b: b, a: a, src: resp.Body,
		conn: connAhead(resp.Request.Context()),
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1),
	}
	resp.Body = s
	go s.fill()
	return true
}

// takeNoBuffering reports whether h says X-Accel-Buffering: no, and takes
// the header out: it is meant for the proxy (nginx does not pass it on
// either).
func takeNoBuffering(h http.Header) bool {
	v, ok := h["X-Accel-Buffering"]
	if !ok {
		return false
	}
	delete(h, "X-Accel-Buffering")
	return len(v) > 0 && strings.EqualFold(strings.TrimSpace(v[0]), "no")
}

// isStream reports whether a response of the content type ct is a stream
// by its kind: server-sent events, or gRPC (gRPC-Web included).
func isStream(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	const grpc = "application/grpc"
	return strings.EqualFold(ct, "text/event-stream") || len(ct) >= len(grpc) && strings.EqualFold(ct[:len(grpc)], grpc)
}

// connAhead returns the count of memory that the responses of ctx's
// client connection hold ahead of their client; a count of its own when
// the connection is not known (a Balancer used as a plain handler).
func connAhead(ctx context.Context) *atomic.Int64 {
	if cc, _ := ctx.Value(connKey{}).(*clientConn); cc != nil {
		return &cc.ahead
	}
	return new(atomic.Int64)
}

// spoolWarnEvery spaces the warnings that responses cannot be spooled to
// disk.
const spoolWarnEvery = time.Minute

// warnSpool logs, at most once a minute, that a response's file could not
// be made.
func (b *Balancer) warnSpool(err error) {
	now := time.Now().UnixNano()
	last := b.spoolWarned.Load()
	if last != 0 && now-last < int64(spoolWarnEvery) {
		return
	}
	if b.spoolWarned.CompareAndSwap(last, now) {
		b.cfg().Logger.Warn("cannot spool a response to the buffer directory; slow clients hold their replica until they have read it, within --send-timeout",
			"error", err)
	}
}
