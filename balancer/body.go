package balancer

import (
	"bytes"
	"io"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
)

// maxPooledBody is the largest body buffer kept for reuse; a rare 50 MiB
// upload is left to the garbage collector rather than held forever.
const maxPooledBody = 4 << 20

// bodyBuffers recycles request-body buffers: at the original load test's ~220 KB per
// request, allocating each afresh costs more CPU (zeroing and collection)
// than proxying it.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// bufferedBody is a request body read whole, shared by every attempt to
// send the request. Its buffer returns to the pool only when the handler is
// done and the transport has reported every attempt's request as written:
// the transport may go on writing a body after the response has arrived,
// and closing the body does not tell (ReverseProxy hides Close from it).
// An attempt that never reports, or reports an error, leaves the buffer to
// the garbage collector.
type bufferedBody struct {
	buf     *bytes.Buffer
	refs    atomic.Int32 // the handler's, plus one per write not yet reported
	noReuse atomic.Bool
}

func newBufferedBody() *bufferedBody {
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	b := &bufferedBody{buf: buf}
	b.refs.Store(1)
	return b
}

// Len returns the body's length; a nil body is empty.
func (b *bufferedBody) Len() int {
	if b == nil {
		return 0
	}
	return b.buf.Len()
}

// reader returns a new reader over the body for one write of the request
// (the first, or a resend through GetBody); it holds a reference until the
// transport reports that write done.
func (b *bufferedBody) reader() io.ReadCloser {
	b.refs.Add(1)
	return io.NopCloser(bytes.NewReader(b.buf.Bytes()))
}

// trace returns a client trace that releases a reader's reference each time
// the transport has finished writing the request (once per write: the
// transport may resend a request on a fresh connection by itself).
func (b *bufferedBody) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err != nil {
				b.noReuse.Store(true)
			}
			b.unref()
		},
	}
}

// unref drops one reference; the last one returns the buffer.
func (b *bufferedBody) unref() {
	if b == nil || b.refs.Add(-1) != 0 {
		return
	}
	if b.buf.Cap() <= maxPooledBody && !b.noReuse.Load() {
		bodyBuffers.Put(b.buf)
	}
	b.buf = nil
}
