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
// room and on disk past it, charged to its client address's share
// (clients.go). It fails before reading anything with 429 when the address
// is receiving too many bodies already, and with 503 when neither budget
// has room.
func (b *Balancer) readBody(w http.ResponseWriter, r *http.Request) (*bufferedBody, *bodyError) {
	limit := b.cfg().MaxBody
	if r.ContentLength > limit {
		return nil, &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is over the limit of %d bytes", r.ContentLength, limit), 0}
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
		return nil, nil
	}
	share, err := b.clients.begin(clientAddr(r))
	if err != nil {
		return nil, b.overShare(w, r, limitUploads, err)
	}
	body, err := b.bufs.newBody(r.ContentLength, b.clients, share)
	if err != nil {
		b.clients.received(share)
		b.clients.end(share)
		// Nothing read: a client that sent Expect: 100-continue sends
		// nothing more either.
		return nil, b.bufferFailed(w, r, err)
	}
	rc := http.NewResponseController(w)
	src := &idleTimeoutReader{r: http.MaxBytesReader(w, r.Body, limit), rc: rc, timeout: b.cfg().ClientTimeout,
		start: time.Now(), grace: b.cfg().UploadGrace, rate: b.cfg().MinUploadRate}
	// The deadline must not outlive the read: the server's background read
	// during the upstream call would hit it and cancel the request.
	defer rc.SetReadDeadline(time.Time{})
	err = body.fill(src)
	b.clients.received(share)
	if err == nil {
		return body, nil
	}
	body.done()
	return nil, b.bodyFailed(w, r, err)
}

// bodyFailed is the answer to a body whose reading failed with err.
func (b *Balancer) bodyFailed(w http.ResponseWriter, r *http.Request, err error) *bodyError {
	limit := b.cfg().MaxBody
	var tooLarge *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooLarge):
		return &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over the limit of %d bytes", limit), 0}
	case errors.Is(err, errSlowUpload):
		b.outcomes.limited[limitSlow].Add(1)
		b.limited.Add(1)
		closeAfter(w, r)
		return &bodyError{http.StatusRequestTimeout, fmt.Sprintf("client sent its body slower than %d bytes a second (after the first %s)", b.cfg().MinUploadRate, b.cfg().UploadGrace), 0}
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Otherwise the server, before answering, reads the rest of the
		// body to reuse the connection, with no deadline left: forever.
		closeAfter(w, r)
		return &bodyError{http.StatusRequestTimeout, fmt.Sprintf("client sent no body data for %s", b.cfg().ClientTimeout), 0}
	case errors.Is(err, errClientBuffer):
		return b.overShare(w, r, limitBuffer, err)
	case errors.Is(err, errBuffersFull), errors.As(err, new(*bufferError)):
		return b.bufferFailed(w, r, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.As(err, &ne), errors.Is(err, net.ErrClosed):
		// The connection ended, or broke, before the body did.
		return &bodyError{}
	default:
		// What is left is the server's complaint about the framing: a
		// malformed chunked body. The connection cannot be read further.
		closeAfter(w, r)
		return &bodyError{http.StatusBadRequest, "malformed request body: " + err.Error(), 0}
	}
}

// overShare answers a body whose client address is over its share (why,
// err): 429 with Retry-After, the connection closed, as the rest of the
// body is not read.
func (b *Balancer) overShare(w http.ResponseWriter, r *http.Request, why limitReason, err error) *bodyError {
	b.outcomes.limited[why].Add(1)
	b.limited.Add(1)
	closeAfter(w, r)
	// Its own uploads have to end first: soon, or it is the slow one.
	w.Header().Set("Retry-After", "1")
	return &bodyError{status: http.StatusTooManyRequests, msg: err.Error(), grpc: grpcResourceExhausted}
}

// bufferFailed answers a body that found no room: 503 with Retry-After,
// counted. A disk error is logged, with the path, which the client is not
// told. The connection is closed, as the rest of the body is not read.
func (b *Balancer) bufferFailed(w http.ResponseWriter, r *http.Request, err error) *bodyError {
	closeAfter(w, r)
	b.retryLater(w)
	var be *bufferError
	if errors.As(err, &be) {
		b.cfg().Logger.Error("cannot buffer a request body on disk", "error", be.err, "path", r.URL.Path)
		b.reject(reasonBufferDir)
		return &bodyError{status: http.StatusServiceUnavailable, msg: "cannot buffer the request body on disk; try again later", grpc: grpcUnavailable}
	}
	b.reject(reasonBuffersFull)
	return &bodyError{status: http.StatusServiceUnavailable, msg: errBuffersFull.Error() + "; try again later", grpc: grpcResourceExhausted}
}

// bufferError is a failure to write a body to disk.
type bufferError struct{ err error }

func (e *bufferError) Error() string { return e.err.Error() }
func (e *bufferError) Unwrap() error { return e.err }

// smallBody is the largest declared body given a buffer of its own size
// rather than a small first chunk and pooled ones.
const smallBody = 16 << 10

// firstChunk is the size of the first chunk of larger bodies, and of those
// of unknown length: small, as it is reserved at the body's first byte,
// and a client that declares 50 MiB and sends a byte must hold little.
const firstChunk = 4 << 10

// firstChunkOf is the size of the first chunk of a body of the declared
// length (-1: unknown).
func firstChunkOf(declared int64) int64 {
	if declared >= 0 && declared <= smallBody {
		return declared
	}
	return firstChunk
}

// newBody starts a body of the declared length (-1: unknown), from the
// client address whose share is share. Nothing is reserved until bytes
// arrive; it fails with errBuffersFull when neither budget has room for
// its first chunk now.
func (b *buffers) newBody(declared int64, shares *clientShares, share *clientShare) (*bufferedBody, error) {
	if !b.hasRoom(firstChunkOf(declared)) {
		return nil, errBuffersFull
	}
	body := &bufferedBody{bufs: b, declared: declared, shares: shares, share: share}
	body.refs.Store(1)
	return body, nil
}

// reserveMem reserves n bytes of memory for the body, from its client's
// share and the budget; first is for its first chunk (buffers.reserveMem).
// It fails with errClientBuffer when the share has no room, and returns
// false when the budget has none.
func (b *bufferedBody) reserveMem(n int64, first bool) (bool, error) {
	if !b.shares.reserve(b.share, n) {
		return false, errClientBuffer
	}
	if !b.bufs.reserveMem(n, first) {
		b.share.bytes.Add(-n)
		return false, nil
	}
	b.memHeld += n
	return true, nil
}

// reserveDisk reserves n bytes of disk for the body, from its client's
// share and the budget: errClientBuffer or errBuffersFull when either has
// no room.
func (b *bufferedBody) reserveDisk(n int64) error {
	if !b.shares.reserve(b.share, n) {
		return errClientBuffer
	}
	if !b.bufs.reserveDisk(n) {
		b.share.bytes.Add(-n)
		return errBuffersFull
	}
	b.diskHeld += n
	return nil
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
		if last := len(b.chunks) - 1; last >= 0 && len(b.chunks[last]) < cap(b.chunks[last]) {
			c := b.chunks[last]
			n, err := src.Read(c[len(c):cap(c)])
			b.chunks[last] = c[:len(c)+n]
			b.size += int64(n)
			if err != nil {
				return eof(err)
			}
			continue
		}
		// The next chunk is reserved only once a byte of it has arrived,
		// but for a body of declared length whose first chunk is full:
		// its client has sent that much and said more is coming, so the
		// next is reserved at once, and read into straight from the
		// connection (waiting for a byte first costs a system call per
		// chunk). That holds at most a chunk more than has arrived.
		if len(b.chunks) > 0 && b.declared > b.size {
			if err := b.reserveNext(); err != nil {
				return err
			}
			continue
		}
		var one [1]byte
		n, err := src.Read(one[:])
		if n == 0 {
			if err != nil {
				return eof(err)
			}
			continue
		}
		if werr := b.take(one[0]); werr != nil {
			return werr
		}
		if err != nil {
			return eof(err)
		}
	}
	buf := copyBuffers.Get().(*[copySize]byte)
	defer copyBuffers.Put(buf)
	for {
		n, err := src.Read(buf[:])
		if n > 0 {
			if werr := b.write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return eof(err)
		}
	}
}

// take stores c, the first byte of a new chunk: in memory when the budget
// has room for the chunk, else in the file the body spills to. A whole
// chunk is reserved, even for a shorter rest of a declared body: it comes
// from the pool, and its whole size is held.
func (b *bufferedBody) take(c byte) error {
	if err := b.reserveNext(); err != nil {
		return err
	}
	if b.file != nil {
		return b.write([]byte{c})
	}
	last := len(b.chunks) - 1
	b.chunks[last] = append(b.chunks[last], c)
	b.size++
	return nil
}

// reserveNext adds the body's next chunk, reserved, or spills the body to
// a file when the memory budget has no room for it.
func (b *bufferedBody) reserveNext() error {
	size, first := int64(chunkSize), len(b.chunks) == 0
	if first {
		size = firstChunkOf(b.declared)
	}
	ok, err := b.reserveMem(size, first)
	if err != nil {
		return err
	}
	if ok {
		b.addChunk(size)
		return nil
	}
	return b.spill()
}

// eof turns the end of the body into success.
func eof(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// spill moves the body to a new file in the buffer directory, reserving
// disk for what has arrived (more is reserved as it arrives, by write),
// and gives back its memory.
func (b *bufferedBody) spill() error {
	// The memory goes back first: the disk taken is no more than it, so
	// the client's share, which holds both, has room for the move.
	b.bufs.releaseMem(b.memHeld)
	b.share.bytes.Add(-b.memHeld)
	b.memHeld = 0
	if err := b.reserveDisk(max(b.size, 1)); err != nil {
		return err
	}
	f, err := b.bufs.createFile()
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
	return nil
}

// write appends p to the spilled body, reserving disk as it grows.
func (b *bufferedBody) write(p []byte) error {
	if grow := b.size + int64(len(p)) - b.diskHeld; grow > 0 {
		if err := b.reserveDisk(grow); err != nil {
			return err
		}
	}
	n, err := b.file.Write(p)
	b.size += int64(n)
	if err != nil {
		return &bufferError{err}
	}
	return nil
}

// closeAfter has the server close r's connection once it is answered: the
// rest of r's body will not be read, and an HTTP/1 connection cannot be
// read further without reading it. An HTTP/2 stream ends on its own, and
// "Connection: close" would end every other stream on the connection (the
// server sends GOAWAY for it).
func closeAfter(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor < 2 {
		w.Header().Set("Connection", "close")
	}
}
