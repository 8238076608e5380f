package balancer

import (
	"io"
	"net/http"
	"time"

	"github.com/mattingctl/mattingctl/internal/accesslog"
)

// AccessLogger takes a record of every request the proxy answered, a line
// of the access log. Log is called on the request's goroutine and must
// not block (accesslog.Log queues, or drops and counts).
type AccessLogger interface {
	Log(accesslog.Record)
}

// accessEntry follows one request for the access log: the bytes it moved
// and its tries. It is made only when there is a log, in one allocation.
type accessEntry struct {
	log      AccessLogger
	r        *http.Request
	start    time.Time
	w        countingWriter
	body     countingBody
	attempts int
	queued   time.Duration
	done     bool // the line was logged, at a 101
}

// beginAccess returns the writer to answer r on, which counts the bytes
// sent when there is an access log, and the request's entry; nil when
// there is no log.
func (b *Balancer) beginAccess(w http.ResponseWriter, r *http.Request, start time.Time) (http.ResponseWriter, *accessEntry) {
	if b.cfg().AccessLog == nil {
		return w, nil
	}
	e := &accessEntry{log: b.cfg().AccessLog, r: r, start: start}
	e.w.ResponseWriter = w
	if r.Body != nil && r.Body != http.NoBody {
		e.body.ReadCloser = r.Body
		r.Body = &e.body
	}
	return &e.w, e
}

// tried records that the request waited queued for a backend, and was
// then sent to a as its try'th attempt, counting from 0; a is nil when
// it got none.
func (e *accessEntry) tried(try int, queued time.Duration, a *attempt) {
	if e == nil {
		return
	}
	e.queued += queued
	if a != nil {
		e.attempts = try + 1
		a.log = e
	}
}

// finish logs the request, answered with code by replica (empty: none
// reached), once. An upgrade is logged when its 101 is forwarded, not
// when the connection it opens ends, which may be hours later.
func (e *accessEntry) finish(replica string, code int) {
	if e == nil || e.done {
		return
	}
	e.done = true
	r := e.r
	e.log.Log(accesslog.Record{
		Time:      e.start,
		Client:    r.RemoteAddr,
		Method:    r.Method,
		Path:      r.RequestURI,
		Protocol:  r.Proto,
		Referer:   r.Header.Get("Referer"),
		UserAgent: r.Header.Get("User-Agent"),
		Status:    code,
		BytesIn:   e.body.n,
		BytesOut:  e.w.n,
		Duration:  time.Since(e.start),
		Queued:    e.queued,
		Replica:   replica,
		Attempts:  e.attempts,
	})
}

// countingWriter counts the response body's bytes sent to the client.
// Unwrap lets http.ResponseController (flushes, hijacking for upgrades,
// deadlines) reach the server's writer.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the request body's bytes received.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
