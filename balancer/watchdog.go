package balancer

import (
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Every phase of a request has a timeout. Reading a client's headers and
// each pause in its body: ClientTimeout (readbody.go). Waiting for a
// backend's response headers: UpstreamTimeout, the transport's
// ResponseHeaderTimeout. And two that a watchdog, one timer per request,
// keeps while the response is relayed: each pause in the backend's body
// (UpstreamTimeout again: nginx's proxy_read_timeout, "between two
// successive read operations"), and each write to the client that does not
// complete (SendTimeout: nginx's send_timeout). Only time spent blocked in
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

// epoch is the origin of mono.
var epoch = time.Now()

// mono returns the monotonic time since epoch, in nanoseconds, plus one:
// never zero, which stands for "no operation in progress".
func mono() int64 { return int64(time.Since(epoch)) + 1 }

// forever is a duration past any timeout.
const forever = time.Duration(math.MaxInt64)

// watchdog times one request's reads from its backend and writes to its
// client. Its timer is made when the first of them begins, and stopped by
// stop, when the request ends.
type watchdog struct {
	readTimeout time.Duration // UpstreamTimeout
	sendTimeout time.Duration // SendTimeout
	// cancel ends the request upstream, and with it a blocked read of the
	// backend's body; nil until the request is forwarded.
	cancel func()
	// w is the server's writer, whose write deadline ends a blocked write.
	w http.ResponseWriter

	// reading and writing are when the read or write in progress began
	// (mono), 0 when none is.
	reading, writing atomic.Int64
	armed            atomic.Bool // the timer has been made, or stop called

	// mu guards the fields below, so that the timer's check never ends a
	// write after stop: on a kept-alive HTTP/1 connection the deadline is
	// the next request's.
	mu          sync.Mutex
	timer       *time.Timer
	stopped     bool
	readExpired bool
	sendExpired bool
	cause       breakCause // the first to expire
}

// begin marks the start of a read or write (op, reading or writing).
func (d *watchdog) begin(op *atomic.Int64) {
	op.Store(mono())
	if !d.armed.Load() {
		d.arm()
	}
}

// arm makes the timer, once, unless the request has ended.
func (d *watchdog) arm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer == nil && !d.stopped {
		d.timer = time.AfterFunc(min(d.readTimeout, d.sendTimeout), d.check)
	}
	d.armed.Store(true)
}

// check ends what has been blocked past its timeout, and sets the timer
// for the next time one could expire.
func (d *watchdog) check() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	now := mono()
	next := d.expire(&d.reading, d.readTimeout, now, &d.readExpired, upstreamTimeout)
	next = min(next, d.expire(&d.writing, d.sendTimeout, now, &d.sendExpired, sendTimeout))
	if next < forever {
		d.timer.Reset(next)
	}
}

// expire ends the operation op if it has been in progress for timeout at
// now, and returns how long until it could expire, or forever once it
// has.
func (d *watchdog) expire(op *atomic.Int64, timeout time.Duration, now int64, expired *bool, why breakCause) time.Duration {
	if *expired {
		return forever
	}
	began := op.Load()
	if began == 0 {
		return timeout
	}
	if blocked := time.Duration(now - began); blocked < timeout {
		return timeout - blocked
	}
	*expired = true
	if d.cause == notBroken {
		d.cause = why
	}
	if why == upstreamTimeout {
		if d.cancel != nil {
			d.cancel()
		}
	} else {
		// HTTP/1: the connection's blocked write fails at once; HTTP/2:
		// the stream is reset at once.
		_ = http.NewResponseController(d.w).SetWriteDeadline(time.Now())
	}
	return forever
}

// stop ends the watch and returns why the response was broken off, if
// the watchdog did it; notBroken otherwise. Its fields no longer change
// once it has returned.
func (d *watchdog) stop() breakCause {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	d.armed.Store(true)
	if d.timer != nil {
		d.timer.Stop()
	}
	return d.cause
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
	// An interim (1xx) status is written to the connection at once.
	w.d.begin(&w.d.writing)
	w.ResponseWriter.WriteHeader(code)
	w.d.writing.Store(0)
}

func (w *sendWriter) Write(p []byte) (int, error) {
	w.d.begin(&w.d.writing)
	n, err := w.ResponseWriter.Write(p)
	w.d.writing.Store(0)
	return n, err
}

// FlushError flushes what the server has buffered to the client: with
// ReverseProxy's FlushInterval -1, after every write.
func (w *sendWriter) FlushError() error {
	w.d.begin(&w.d.writing)
	err := http.NewResponseController(w.ResponseWriter).Flush()
	w.d.writing.Store(0)
	return err
}

func (w *sendWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// watchedBody is a backend's response body whose reads its watchdog times.
type watchedBody struct {
	io.ReadCloser
	d *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.d.begin(&b.d.reading)
	n, err := b.ReadCloser.Read(p)
	b.d.reading.Store(0)
	return n, err
}

// watch sets up x's watchdog, and returns the writer x's response is
// relayed through: x.w, timed. rw is the server's writer.
func (b *Balancer) watch(x *exchange, rw http.ResponseWriter) http.ResponseWriter {
	d := &x.watch
	d.readTimeout, d.sendTimeout, d.w = b.opts.UpstreamTimeout, b.opts.SendTimeout, rw
	if x.r.ProtoMajor == 1 {
		// The deadline the connection's previous response left (endWatch)
		// is not this one's.
		_ = http.NewResponseController(rw).SetWriteDeadline(time.Time{})
	}
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

// endWatch stops x's watchdog and returns why x's response was broken
// off, if the watchdog did it. An HTTP/1 response is not done when its
// handler returns: the server then writes what it has buffered (a chunked
// body's last chunk). That is bounded by the send timeout too, through
// the connection's write deadline, which the connection's next request
// clears (watch); one that timed out keeps its deadline in the past.
func (b *Balancer) endWatch(x *exchange) breakCause {
	cause := x.watch.stop()
	if x.r.ProtoMajor == 1 && !x.watch.sendExpired && (x.cur == nil || !x.cur.upgraded) {
		_ = http.NewResponseController(x.watch.w).SetWriteDeadline(time.Now().Add(b.opts.SendTimeout))
	}
	return cause
}
