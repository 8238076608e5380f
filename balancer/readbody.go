package balancer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// bodyError is why a request body could not be read, and how to answer.
type bodyError struct {
	// status is the answer; 0 means that the client went away, or broke
	// off its upload, and gets its connection closed with no answer.
	status int
	msg    string
	// grpc is the status a gRPC client gets; zero means grpcCodeFor(status).
	grpc grpcCode
}

// readBody reads r's body whole, in memory while the memory budget has
// room and on disk past it. It fails with 503 before reading anything when
// neither has room.
func (b *Balancer) readBody(w http.ResponseWriter, r *http.Request) (*bufferedBody, *bodyError) {
	limit := b.opts.MaxBody
	if r.ContentLength > limit {
		return nil, &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is over the limit of %d bytes", r.ContentLength, limit), 0}
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
		return nil, nil
	}
	body, err := b.bufs.newBody(r.ContentLength)
	if err != nil {
		// Nothing read: a client that sent Expect: 100-continue sends
		// nothing more either.
		return nil, b.bufferFailed(w, r, err)
	}
	rc := http.NewResponseController(w)
	src := &idleTimeoutReader{r: http.MaxBytesReader(w, r.Body, limit), rc: rc, timeout: b.opts.ClientTimeout}
	// The deadline must not outlive the read: the server's background read
	// during the upstream call would hit it and cancel the request.
	defer rc.SetReadDeadline(time.Time{})
	err = body.fill(src)
	if err == nil {
		return body, nil
	}
	body.done()
	var tooLarge *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooLarge):
		return nil, &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over the limit of %d bytes", limit), 0}
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Otherwise the server, before answering, reads the rest of the
		// body to reuse the connection, with no deadline left: forever.
		w.Header().Set("Connection", "close")
		return nil, &bodyError{http.StatusRequestTimeout, fmt.Sprintf("client sent no body data for %s", b.opts.ClientTimeout), 0}
	case errors.Is(err, errBuffersFull), errors.As(err, new(*bufferError)):
		return nil, b.bufferFailed(w, r, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.As(err, &ne), errors.Is(err, net.ErrClosed):
		// The connection ended, or broke, before the body did.
		return nil, &bodyError{}
	default:
		// What is left is the server's complaint about the framing: a
		// malformed chunked body. The connection cannot be read further.
		w.Header().Set("Connection", "close")
		return nil, &bodyError{http.StatusBadRequest, "malformed request body: " + err.Error(), 0}
	}
}

// bufferFailed answers a body that found no room: 503, with Retry-After
// when the budgets are full (a disk error is logged too). The connection
// is closed, as the rest of the body is not read.
func (b *Balancer) bufferFailed(w http.ResponseWriter, r *http.Request, err error) *bodyError {
	w.Header().Set("Connection", "close")
	var be *bufferError
	if errors.As(err, &be) {
		b.opts.Logger.Error("cannot buffer a request body on disk", "error", be.err, "path", r.URL.Path)
		return &bodyError{http.StatusServiceUnavailable, "cannot buffer the request body: " + be.err.Error(), 0}
	}
	b.reject(reasonBuffersFull)
	b.retryLater(w)
	return &bodyError{status: http.StatusServiceUnavailable, msg: errBuffersFull.Error() + "; try again later", grpc: grpcResourceExhausted}
}

// bufferError is a failure to write a body to disk.
type bufferError struct{ err error }

func (e *bufferError) Error() string { return e.err.Error() }
func (e *bufferError) Unwrap() error { return e.err }

// smallBody is the largest declared body given a buffer of its own size
// rather than a pooled chunk.
const smallBody = 16 << 10

// newBody starts a body of the declared length (-1: unknown). It reserves
// the body's first chunk of memory (64 KiB, or the declared length when it
// is 16 KiB at most); when the memory budget has no room, the body goes to disk
// at once. It fails with errBuffersFull when neither has room.
func (b *buffers) newBody(declared int64) (*bufferedBody, error) {
	body := &bufferedBody{bufs: b, declared: declared}
	body.refs.Store(1)
	// A small body gets a buffer of its own size; any other a pooled chunk.
	first := int64(chunkSize)
	if declared >= 0 && declared <= smallBody {
		first = declared
	}
	if b.reserveMem(first, true) {
		body.memHeld = first
		body.addChunk(first)
		return body, nil
	}
	if err := body.spill(); err != nil {
		body.done()
		return nil, err
	}
	return body, nil
}

// addChunk appends an empty chunk of n bytes, reserved already.
func (b *bufferedBody) addChunk(n int64) {
	if n == chunkSize {
		c := chunks.Get().(*[chunkSize]byte)
		b.pooled = append(b.pooled, c)
		b.chunks = append(b.chunks, c[:0])
		return
	}
	b.chunks = append(b.chunks, make([]byte, 0, n))
}

// fill reads the body from src to its end.
func (b *bufferedBody) fill(src io.Reader) error {
	for b.file == nil {
		last := len(b.chunks) - 1
		c := b.chunks[last]
		if len(c) < cap(c) {
			n, err := src.Read(c[len(c):cap(c)])
			b.chunks[last] = c[:len(c)+n]
			b.size += int64(n)
			if err != nil {
				return eof(err)
			}
			continue
		}
		// The next chunk is reserved only once a byte of it has arrived.
		var one [1]byte
		n, err := src.Read(one[:])
		if n == 0 {
			if err != nil {
				return eof(err)
			}
			continue
		}
		// A whole chunk, even for a shorter rest of a declared body: it
		// comes from the pool, and its whole size is held.
		if b.bufs.reserveMem(chunkSize, false) {
			b.memHeld += chunkSize
			b.addChunk(chunkSize)
			b.chunks[last+1] = append(b.chunks[last+1], one[0])
			b.size++
		} else {
			if serr := b.spill(); serr != nil {
				return serr
			}
			if werr := b.write(one[:]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return eof(err)
		}
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	for {
		n, err := src.Read(*buf)
		if n > 0 {
			if werr := b.write((*buf)[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return eof(err)
		}
	}
}

// eof turns the end of the body into success.
func eof(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// spill moves the body to a new file in the buffer directory, reserving
// disk for the whole declared length, or for what has arrived when the
// length is unknown, and gives back its memory.
func (b *bufferedBody) spill() error {
	need := max(b.size, 1) // an unknown length grows as it arrives
	if b.declared >= 0 {
		need = b.declared
	}
	if !b.bufs.reserveDisk(need) {
		return errBuffersFull
	}
	b.diskHeld = need
	f, err := os.CreateTemp(b.bufs.dir, BufferFilePattern)
	if err != nil {
		return &bufferError{err}
	}
	b.file = f
	for _, c := range b.chunks {
		if _, err := f.Write(c); err != nil {
			return &bufferError{err}
		}
	}
	// No reader has been made yet: the chunks can go back at once.
	for _, c := range b.pooled {
		chunks.Put(c)
	}
	b.chunks, b.pooled = nil, nil
	b.bufs.releaseMem(b.memHeld)
	b.memHeld = 0
	return nil
}

// write appends p to the spilled body, reserving disk as it grows.
func (b *bufferedBody) write(p []byte) error {
	if grow := b.size + int64(len(p)) - b.diskHeld; grow > 0 {
		if !b.bufs.reserveDisk(grow) {
			return errBuffersFull
		}
		b.diskHeld += grow
	}
	n, err := b.file.Write(p)
	b.size += int64(n)
	if err != nil {
		return &bufferError{err}
	}
	return nil
}

// idleTimeoutReader bounds each pause in the client's upload rather than the
// whole upload, so that a large body on a slow link still gets through.
type idleTimeoutReader struct {
	r        io.Reader
	rc       *http.ResponseController
	timeout  time.Duration
	extended time.Time
}

func (t *idleTimeoutReader) Read(p []byte) (int, error) {
	// Moving the deadline costs a timer update; once a second is enough,
	// or every quarter of a shorter timeout, so that a pause of at least
	// three quarters of the timeout is always allowed.
	if now := time.Now(); now.Sub(t.extended) > min(time.Second, t.timeout/4) {
		_ = t.rc.SetReadDeadline(now.Add(t.timeout))
		t.extended = now
	}
	return t.r.Read(p)
}
