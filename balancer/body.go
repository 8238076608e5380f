package balancer

import (
	"crypto/sha256"
	"io"
	"net"
	"net/http/httptrace"
	"os"
	"sync/atomic"
)

// bufferedBody is a request body read whole, in memory chunks or, once
// those do not fit the memory budget, in a temporary file; every attempt to
// send the request reads it afresh.
//
// Its budget is released, and its file closed and removed, when the handler
// is done. Its pooled chunks return to the pool only when, besides, the
// transport has reported every attempt's request as written: the transport
// may go on writing a body after the response has arrived, and closing the
// body does not tell (ReverseProxy hides Close from it). An attempt that
// never reports, or reports an error, leaves the chunks to the garbage
// collector. A transport still reading a closed file gets an error, which
// is harmless: the response it was writing for has been sent.
type bufferedBody struct {
	bufs     *buffers
	shares   *clientShares
	share    *clientShare // its client address's, charged what it reserves
	declared int64        // the Content-Length, or -1
	chunks   [][]byte     // in memory: each full but the last; nil once spilled
	pooled   []*[chunkSize]byte
	file     *os.File // on disk: nil until spilled
	size     int64
	memHeld  int64 // reserved from the budgets, until done
	diskHeld int64

	refs    atomic.Int32 // the handler's, plus one per write not yet reported
	noReuse atomic.Bool
}

// Len returns the body's length; a nil body is empty.
func (b *bufferedBody) Len() int64 {
	if b == nil {
		return 0
	}
	return b.size
}

// reader returns a new reader over the body for one write of the request
// (the first, or a resend through GetBody); a body with pooled chunks
// holds a reference for it until the transport reports that write done.
func (b *bufferedBody) reader() io.ReadCloser {
	if b.pooledChunks() {
		b.refs.Add(1)
	}
	if b.file != nil {
		return io.NopCloser(io.NewSectionReader(b.file, 0, b.size))
	}
	// The HTTP/1 client writes it from its chunks, in one writev with
	// the request's head (h1client.go).
	return &chunkReader{chunks: b.chunks}
}

// bytes returns a copy of the body in one slice, for a batch (batch.go). It
// takes no reference: the handler's own keeps the chunks while it copies.
func (b *bufferedBody) bytes() ([]byte, error) {
	if b.file != nil {
		out := make([]byte, b.size)
		_, err := io.ReadFull(io.NewSectionReader(b.file, 0, b.size), out)
		return out, err
	}
	out := make([]byte, 0, b.size)
	for _, c := range b.chunks {
		out = append(out, c...)
	}
	return out, nil
}

// pooledChunks reports whether the body holds chunks from the pool, which
// go back only once every write of it is reported done (trace). A body of
// one chunk, or spilled to a file, holds none: the garbage collector
// takes it, and its writes need no tracing.
func (b *bufferedBody) pooledChunks() bool { return len(b.pooled) > 0 }

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

// done ends the handler's use of the body: it gives back the body's budget,
// removes its file and drops the handler's reference.
func (b *bufferedBody) done() {
	if b == nil {
		return
	}
	b.dropFile()
	b.bufs.releaseMem(b.memHeld)
	b.bufs.releaseDisk(b.diskHeld)
	b.share.bytes.Add(-b.memHeld - b.diskHeld)
	b.shares.end(b.share)
	b.memHeld, b.diskHeld = 0, 0
	b.unref()
}

func (b *bufferedBody) dropFile() {
	if b.file != nil {
		_ = b.file.Close()
		_ = os.Remove(b.file.Name())
	}
}

// unref drops one reference; the last one returns the pooled chunks.
func (b *bufferedBody) unref() {
	if b.refs.Add(-1) != 0 {
		return
	}
	if !b.noReuse.Load() {
		for _, c := range b.pooled {
			chunks.Put(c)
		}
	}
	b.pooled, b.chunks = nil, nil
}

// chunkReader reads a body held in memory; the chunks are shared by every
// reader, so it only moves its own position. It is the transport's body
// itself, not wrapped in a NopCloser, so that the connection's ReadFrom
// recognises it.
type chunkReader struct {
	chunks [][]byte
	i, off int // the next byte is chunks[i][off]
}

func (r *chunkReader) Close() error { return nil }

func (r *chunkReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.i < len(r.chunks) {
		c := copy(p[n:], r.chunks[r.i][r.off:])
		n += c
		if r.off += c; r.off == len(r.chunks[r.i]) {
			r.i, r.off = r.i+1, 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// appendTo appends at most n bytes of the rest of the body to bufs, as
// slices of its chunks, and moves the reader past them.
func (r *chunkReader) appendTo(bufs net.Buffers, n int64) net.Buffers {
	for i, off := r.i, r.off; i < len(r.chunks) && n > 0; i, off = i+1, 0 {
		c := r.chunks[i][off:]
		if int64(len(c)) > n {
			c = c[:n]
		}
		bufs = append(bufs, c)
		n -= int64(len(c))
		r.skip(int64(len(c)))
	}
	return bufs
}

// skip moves the reader n bytes on.
func (r *chunkReader) skip(n int64) {
	for n > 0 && r.i < len(r.chunks) {
		c := min(n, int64(len(r.chunks[r.i])-r.off))
		n -= c
		if r.off += int(c); r.off == len(r.chunks[r.i]) {
			r.i, r.off = r.i+1, 0
		}
	}
}

// key returns the quarantine key of the request with method, uri and body
// b (nil: none): the SHA-256 of the three, each ended by a zero byte
// except the body.
func (b *bufferedBody) key(method, uri string) quarantineKey {
	h := sha256.New()
	_, _ = io.WriteString(h, method+"\x00"+uri+"\x00")
	switch {
	case b == nil:
	case b.file != nil:
		_, _ = io.Copy(h, io.NewSectionReader(b.file, 0, b.size))
	default:
		for _, c := range b.chunks {
			h.Write(c)
		}
	}
	var k quarantineKey
	h.Sum(k[:0])
	return k
}
