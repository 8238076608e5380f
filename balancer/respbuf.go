package balancer

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"
)

// minReadAhead is the smallest response read ahead. The proxy copies a
// response in 32 KiB reads, and the backend's connection is released when
// a read reaches the end of the body: a response that fits in one read is
// released before its first byte is written to the client anyway.
const minReadAhead = 32 << 10

// readAhead starts reading resp's body ahead of the client, into memory,
// and returns true, when the body has a Content-Length over minReadAhead
// and up to Options.ResponseBuffer and the memory budget has room for it.
// The attempt's backend is released as soon as the body has been read
// whole, however slowly the client takes it. Other responses (streams,
// event streams, large ones, or all once the budget is full) are passed
// through as they arrive, and return false.
func (b *Balancer) readAhead(resp *http.Response, a *attempt) bool {
	n := resp.ContentLength
	if n <= minReadAhead || n > b.opts.ResponseBuffer || resp.Body == nil || resp.Body == http.NoBody ||
		resp.Request.Method == http.MethodHead || isEventStream(resp.Header) {
		return false
	}
	reserved := (n + chunkSize - 1) / chunkSize * chunkSize
	// Bounded as a request body's later chunks are: the last eighth of
	// the budget stays for the first chunks of request bodies.
	if !b.bufs.reserveMem(reserved, false) {
		return false
	}
	r := &aheadBody{bufs: b.bufs, a: a, src: resp.Body, held: reserved, wake: make(chan struct{}, 1)}
	resp.Body = r
	go r.fill()
	return true
}

// isEventStream reports whether a response is a server-sent event stream,
// which is passed through live even with a Content-Length.
func isEventStream(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "text/event-stream"
}

// errClientLeft ends a read-ahead whose client stopped reading.
var errClientLeft = errors.New("the client stopped reading the response")

// aheadBody is a response body read from the backend by its own goroutine
// (fill), into pooled chunks, as fast as the backend sends it, and handed
// to the proxy's copy to the client as the client takes it. A chunk goes
// back to the pool, and its share of the budget is given back, once the
// client has been sent all of it; the rest when both sides are done.
type aheadBody struct {
	bufs *buffers
	a    *attempt
	src  io.ReadCloser // the backend's body; fill's alone
	wake chan struct{} // a token when filled or err changed

	// mu guards the fields below.
	mu         sync.Mutex
	chunks     []*[chunkSize]byte // byte k is in chunks[k/chunkSize]; nil once sent
	filled     int64              // bytes read from the backend
	sent       int64              // bytes handed to the client's copy
	err        error              // how the backend's body ended: io.EOF or why not
	held       int64              // memory reserved from the budget
	readerDone bool
	closed     bool
}

// fill reads the backend's body to its end, then releases the backend.
func (r *aheadBody) fill() {
	var err error
	for {
		r.mu.Lock()
		i, off := int(r.filled/chunkSize), int(r.filled%chunkSize)
		if i == len(r.chunks) {
			r.chunks = append(r.chunks, chunks.Get().(*[chunkSize]byte))
		}
		c, closed := r.chunks[i], r.closed
		r.mu.Unlock()
		if closed {
			err = errClientLeft
			break
		}
		n, rerr := r.src.Read(c[off:])
		r.mu.Lock()
		r.filled += int64(n)
		r.mu.Unlock()
		r.poke()
		if rerr != nil {
			err = rerr
			break
		}
	}
	if err == io.EOF {
		r.a.done() // the backend is free while the client reads
	}
	_ = r.src.Close()
	r.mu.Lock()
	r.err, r.readerDone = err, true
	last := r.closed
	r.mu.Unlock()
	r.poke()
	if last {
		r.free()
	}
}

func (r *aheadBody) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Read hands the client's copy what has been read from the backend,
// waiting for more when it has all of that.
func (r *aheadBody) Read(p []byte) (int, error) {
	for {
		r.mu.Lock()
		if r.sent < r.filled {
			i, off := int(r.sent/chunkSize), int(r.sent%chunkSize)
			end := int(min(r.filled-int64(i)*chunkSize, chunkSize))
			n := copy(p, r.chunks[i][off:end])
			r.sent += int64(n)
			if off+n == chunkSize { // sent whole; fill is past it
				chunks.Put(r.chunks[i])
				r.chunks[i] = nil
				r.held -= chunkSize
				r.bufs.releaseMem(chunkSize)
			}
			r.mu.Unlock()
			return n, nil
		}
		err := r.err
		r.mu.Unlock()
		if err != nil {
			return 0, err
		}
		<-r.wake
	}
}

// Close ends the client's side; the chunks and budget go back once fill
// has ended too (at once when the backend's body was read whole).
func (r *aheadBody) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	last := r.readerDone
	r.mu.Unlock()
	if last {
		r.free()
	}
	return nil
}

// free returns the chunks and the budget; both sides are done.
func (r *aheadBody) free() {
	for _, c := range r.chunks {
		if c != nil {
			chunks.Put(c)
		}
	}
	r.chunks = nil
	r.bufs.releaseMem(r.held)
	r.held = 0
}
