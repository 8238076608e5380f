package balancer

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Every phase of a request has a timeout. Reading a client's headers and
// each pause in its body: ClientTimeout (readbody.go). Waiting for a
// backend's response headers: UpstreamTimeout, the transport's
// ResponseHeaderTimeout. And two that a watchdog per request keeps while
// the response is relayed, checked by watchers (watchers.go): each pause
// in the backend's body (UpstreamTimeout again: nginx's
// proxy_read_timeout, "between two successive read operations"), and each
// write to the client that does not complete (SendTimeout: nginx's
// send_timeout). Only time spent blocked in
// a read from the backend, or in a write to the client, counts: a backend
// is not blamed for a client that reads slowly, nor a client for a backend
// that computes slowly, and a response that keeps moving is never cut.
//
// On expiry the watchdog ends what is blocked. A stalled backend: the
// request is cancelled upstream, which closes the backend's connection (or
// resets its HTTP/2 stream) and ends the blocked read with an error. A
// client that takes nothing: its write deadline is moved into the past,
// which ends the blocked write, and the server closes its HTTP/1
// connection or resets its HTTP/2 stream (a zero flow-control window
// included). Either way the response breaks off as any does mid-way,
// with ReverseProxy's http.ErrAbortHandler: an HTTP/1 client gets a
// Content-Length body cut short or a chunked one without its last chunk,
// an HTTP/2 client RST_STREAM; never an end that the backend did not
// send. The backend's slot is then given back as the attempt ends.

// breakCause is why a response was broken off by the proxy.
type breakCause int

const (
	notBroken       breakCause = iota
	sendTimeout                // the client took nothing for SendTimeout
	upstreamTimeout            // the backend sent nothing for UpstreamTimeout
	numCauses
)

// watchdog times one request's reads from its backend and writes to its
// client. It counts them rather than reading the clock for each, which
// would cost more than the rest of it: at every check it sees whether the
// same operation is still in progress, and ends one that has been for its
// timeout. It is listed with its watchers when its first operation
// begins, and taken off by stop, when the request ends.
type watchdog struct {
	ws          *watchers
	readTimeout time.Duration // UpstreamTimeout
	sendTimeout time.Duration // SendTimeout
	// cancel ends the request upstream, and with it a blocked read of the
	// backend's body; nil until the request is forwarded.
	cancel func()
	// w is the server's writer, whose write deadline ends a blocked write.
	w http.ResponseWriter

	read, write opWatch // reads from the backend, writes to the client
	// dry is set by the relayed body's read that returned less than it
	// was asked for (the backend had sent no more for now), and cleared
	// by the write that follows it, which then flushes (drainedBody).
	// Only ReverseProxy's copy loop, one goroutine, touches it.
	dry        bool
	armed      atomic.Bool // listed, or stop called
	prev, next *watchdog   // in ws's list; guarded by ws.mu

	// mu guards the fields below and the opWatches' own, so that a check
	// never ends a write after stop: on a kept-alive HTTP/1 connection the
	// deadline is the next request's.
	mu      sync.Mutex
	listed  bool
	stopped bool
	cause   breakCause // the first to expire
}

// opWatch follows one kind of operation for the watchdog. Operations of a
// kind never overlap: the body is read by one goroutine at a time, and
// ReverseProxy's writes and flushes hold one lock.
type opWatch struct {
	// seq is incremented as each operation begins and as it ends: it is
	// odd while one is in progress.
	seq atomic.Uint32
	// Guarded by the watchdog's mu:
	seen    uint32 // seq at the last check
	stalled int    // checks in a row that found the same operation in progress
	limit   int    // stalled that means it has been in progress for its timeout
	expired bool
}

func (o *opWatch) begin() { o.seq.Add(1) }
func (o *opWatch) end()   { o.seq.Add(1) }

// expires reports, at a check, whether the operation in progress has now
// been seen at limit checks after the one that first found it: it began
// before that one, so it has been in progress for limit periods at least.
func (o *opWatch) expires() bool {
	if o.expired {
		return false
	}
	s := o.seq.Load()
	if s%2 == 1 && s == o.seen {
		o.stalled++
	} else {
		o.stalled = 0
	}
	o.seen = s
	o.expired = o.stalled >= o.limit
	return o.expired
}

// begin marks the start of a read or write, op.
func (d *watchdog) begin(op *opWatch) {
	op.begin()
	if !d.armed.Load() {
		d.arm()
	}
}

// arm lists d with its watchers, once, unless the request has ended.
func (d *watchdog) arm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.listed && !d.stopped {
		d.read.limit = d.ws.limit(d.readTimeout)
		d.write.limit = d.ws.limit(d.sendTimeout)
		d.listed = true
		d.ws.add(d)
	}
	d.armed.Store(true)
}

// check ends what has been blocked past its timeout.
func (d *watchdog) check() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if d.read.expires() {
		d.expire(upstreamTimeout)
	}
	if d.write.expires() {
		d.expire(sendTimeout)
	}
}

// expire ends the operation that timed out, why; mu is held.
func (d *watchdog) expire(why breakCause) {
	if d.cause == notBroken {
		d.cause = why
	}
	if why == upstreamTimeout {
		if d.cancel != nil {
			d.cancel()
		}
		return
	}
	// HTTP/1: the connection's blocked write fails at once; HTTP/2: the
	// stream is reset at once.
	_ = http.NewResponseController(d.w).SetWriteDeadline(time.Now())
}

// stop ends the watch and returns why the response was broken off, if
// the watchdog did it; notBroken otherwise. Its fields no longer change
// once it has returned.
func (d *watchdog) stop() breakCause {
	d.mu.Lock()
	d.stopped = true
	d.armed.Store(true)
	listed, cause := d.listed, d.cause
	d.mu.Unlock()
	if listed {
		d.ws.remove(d)
	}
	return cause
}

// sendWriter is the writer a response is relayed to the client through:
// each write, flush and status line it passes on is timed by its
// watchdog. Unwrap gives http.ResponseController the server's writer
// (hijacking for upgrades, deadlines).
type sendWriter struct {
	http.ResponseWriter
	d *watchdog
}

func (w *sendWriter) WriteHeader(code int) {
	if code >= 200 { // buffered with the body
		w.ResponseWriter.WriteHeader(code)
		return
	}
	// An interim (1xx) status is written to the connection at once.
	w.d.begin(&w.d.write)
	w.ResponseWriter.WriteHeader(code)
	w.d.write.end()
}

func (w *sendWriter) Write(p []byte) (int, error) {
	w.d.begin(&w.d.write)
	n, err := w.ResponseWriter.Write(p)
	if err == nil && w.d.dry {
		w.d.dry = false
		err = http.NewResponseController(w.ResponseWriter).Flush()
	}
	w.d.write.end()
	return n, err
}

// FlushError flushes what the server has buffered to the client: after
// every write of a stream (ReverseProxy's FlushInterval), and at the end
// of a response (flushAnswered).
func (w *sendWriter) FlushError() error {
	w.d.begin(&w.d.write)
	err := http.NewResponseController(w.ResponseWriter).Flush()
	w.d.write.end()
	return err
}

func (w *sendWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// watchedBody is a backend's response body whose reads its watchdog times.
type watchedBody struct {
	io.ReadCloser
	d *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.d.begin(&b.d.read)
	n, err := b.ReadCloser.Read(p)
	b.d.read.end()
	return n, err
}

// drainedBody is the response body ReverseProxy relays when it has a
// Content-Length. ReverseProxy flushes a stream (no Content-Length, or
// text/event-stream) after every write; a body with a length is written
// as it is read, and flushed by the write after a read that came back
// short: the backend has sent nothing more for now, and what it has sent
// must not wait in the server's buffers for what comes next. A response
// that arrives as fast as it is read goes out in the fewest writes, its
// headers with its first bytes.
type drainedBody struct {
	io.ReadCloser
	d *watchdog
}

func (b *drainedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n < len(p) && err == nil {
		b.d.dry = true
	}
	return n, err
}

// watch sets up x's watchdog, and returns the writer x's response is
// relayed through: x.w, timed. rw is the server's writer.
func (b *Balancer) watch(x *exchange, rw http.ResponseWriter) http.ResponseWriter {
	d := &x.watch
	d.ws, d.readTimeout, d.sendTimeout, d.w = b.watchers, b.cfg().UpstreamTimeout, b.cfg().SendTimeout, rw
	x.send = sendWriter{ResponseWriter: x.w, d: d}
	return &x.send
}

// setCancel gives the watchdog the function that ends its request
// upstream.
func (d *watchdog) setCancel(cancel func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancel = cancel
}

// flushAnswered sends what x's HTTP/1 answer, forwarded whole, still holds
// (a response with an empty body whose status line ReverseProxy left for
// the server to write after the handler), now, while its writes are
// timed. Not HTTP/2: there a response that ends with its headers (a gRPC
// trailers-only answer) must go out as one frame, after the handler, and
// the server's connection-level WriteByteTimeout bounds that.
func (x *exchange) flushAnswered() {
	if x.r.ProtoMajor == 1 && !x.cur.upgraded {
		_ = x.send.FlushError()
	}
}

// endWatch stops x's watchdog and returns why x's response was broken
// off, if the watchdog did it. An HTTP/1 response is not done when its
// handler returns: the server then writes what it still holds. Every
// response is flushed by the handler, under the watch (ReverseProxy after
// each write, flushAnswered, refuse.go its own answers), so that is a
// chunked body's last chunk at most, which a client that takes nothing would hold for ever. It
// is bounded by the send timeout through the connection's write deadline,
// which the server clears once the response is done; set only for a
// response without a Content-Length, as setting it costs more than the
// rest of the watch. A connection whose write timed out keeps its
// deadline in the past.
func (b *Balancer) endWatch(x *exchange) breakCause {
	cause := x.watch.stop()
	if x.r.ProtoMajor == 1 && !x.watch.write.expired && (x.cur == nil || !x.cur.upgraded) &&
		x.w.Header().Get("Content-Length") == "" {
		_ = http.NewResponseController(x.watch.w).SetWriteDeadline(time.Now().Add(b.cfg().SendTimeout))
	}
	return cause
}
