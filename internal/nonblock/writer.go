// Package nonblock passes lines to a destination that may block (a pipe
// nobody reads, a terminal held by Ctrl-S, a slow disk) or may be gone (the
// reader of a pipe exited) without ever blocking whoever writes them: lines
// wait in a bounded queue for one goroutine that writes them in order, and
// past the bound they are dropped and counted.
package nonblock

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultBuffer bounds the bytes a Writer queues: about eight thousand
// lines of a hundred bytes, enough to ride out a terminal's pause, and
// little memory for a process that may hold two.
const DefaultBuffer = 1 << 20

// LineCost is what a queued line costs against the buffer beyond its
// bytes, about its bookkeeping, so that a flood of empty lines is bounded
// in memory as much as one of long lines.
const LineCost = 32

// Options configure a Writer.
type Options struct {
	// Buffer bounds the bytes waiting to be written, each line counting
	// its length plus LineCost, the line being written not included; zero
	// means DefaultBuffer.
	Buffer int
	// Warning formats the line written when writing resumes after n lines
	// were dropped; nil means "mattingctl: dropped n lines while output
	// was blocked".
	Warning func(n uint64) []byte
	// Gone, if not nil, is called once, from the writing goroutine, when
	// the destination has gone (a write failed with EPIPE: the reader of
	// a pipe exited). Every line from then on is dropped and counted.
	Gone func(err error)
}

// Writer is an io.Writer that never blocks. Each Write is one line (or one
// log entry): it is queued whole or dropped whole. One goroutine writes the
// queue to the destination in order.
//
// Once the queue is full, lines are dropped until it has drained to half
// the buffer, so that a destination just slower than its producers gets
// few long gaps, each followed by one warning, rather than a warning every
// other line.
type Writer struct {
	dst     io.Writer
	max     int
	warning func(uint64) []byte
	gone    func(error)
	dropped atomic.Uint64
	wake    chan struct{} // a token when there is work or Close was called
	done    chan struct{} // closed when the writing goroutine returns

	mu      sync.Mutex // guards the fields below
	queue   []entry
	queued  int    // cost of the queue: its bytes plus LineCost a line
	full    bool   // dropping until queued is at most max/2
	pending uint64 // lines dropped since the last line queued
	dstGone bool   // the destination failed with EPIPE
	closed  bool
}

// entry is a queued line and the lines dropped just before it.
type entry struct {
	line    []byte
	dropped uint64
}

// NewWriter starts a Writer to dst. Close stops it.
func NewWriter(dst io.Writer, opts Options) *Writer {
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.Warning == nil {
		opts.Warning = defaultWarning
	}
	w := &Writer{
		dst:     dst,
		max:     opts.Buffer,
		warning: opts.Warning,
		gone:    opts.Gone,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go w.run()
	return w
}

// WarningText is the default warning, without a newline.
func WarningText(n uint64) string {
	lines := "lines"
	if n == 1 {
		lines = "line"
	}
	return fmt.Sprintf("dropped %d %s while output was blocked", n, lines)
}

func defaultWarning(n uint64) []byte {
	return []byte("mattingctl: " + WarningText(n) + "\n")
}

// Write queues a copy of p, or drops it when the queue is full, the
// destination has gone or the Writer is closed. It never blocks on the
// destination and never fails.
func (w *Writer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.mu.Lock()
	switch {
	case w.dstGone || w.closed:
		w.mu.Unlock()
		w.dropped.Add(1)
		return len(p), nil
	case w.full || w.queued+len(p)+LineCost > w.max:
		w.full = true
		w.pending++
		w.mu.Unlock()
		w.dropped.Add(1)
		return len(p), nil
	}
	w.queue = append(w.queue, entry{line: bytes.Clone(p), dropped: w.pending})
	w.queued += len(p) + LineCost
	w.pending = 0
	w.mu.Unlock()
	w.signal()
	return len(p), nil
}

// Dropped is how many lines were dropped so far.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Close stops the Writer: lines written from now on are dropped, and the
// queued ones are written, for at most timeout. It reports whether they
// all were; if not, the goroutine is left blocked in the destination's
// Write (nothing can interrupt a blocking write(2)), which is harmless in
// a process about to exit.
func (w *Writer) Close(timeout time.Duration) bool {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.signal()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Writer) run() {
	defer close(w.done)
	for {
		e, ok := w.next()
		if !ok {
			return
		}
		if e.dropped > 0 {
			w.write(w.warning(e.dropped))
		}
		if e.line != nil && !w.write(e.line) {
			w.dropped.Add(1)
		}
	}
}

// next waits for a line to write, or for drops to report after the last
// one, and takes it off the queue. It returns false once the Writer is
// closed and has nothing left to write, or the destination has gone.
func (w *Writer) next() (entry, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) == 0 && w.pending == 0 {
		if w.closed || w.dstGone {
			return entry{}, false
		}
		w.mu.Unlock()
		<-w.wake
		w.mu.Lock()
	}
	if len(w.queue) == 0 {
		// Lines were dropped after the last one queued, and the queue has
		// drained since: say so now rather than at the next line.
		e := entry{dropped: w.pending}
		w.pending = 0
		w.full = false
		return e, true
	}
	e := w.queue[0]
	w.queue[0] = entry{}
	w.queue = w.queue[1:]
	w.queued -= len(e.line) + LineCost
	if w.full && w.queued <= w.max/2 {
		w.full = false
	}
	return e, true
}

// write writes p to the destination and reports whether it was written.
// EPIPE means the destination has gone: the queue is dropped and counted,
// Gone is called, and nothing more is written.
func (w *Writer) write(p []byte) bool {
	w.mu.Lock()
	gone := w.dstGone
	w.mu.Unlock()
	if gone {
		return false
	}
	_, err := w.dst.Write(p)
	if err == nil {
		return true
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, os.ErrClosed) {
		return false // a full disk may recover: try the next line
	}
	w.mu.Lock()
	w.dstGone = true
	n := uint64(len(w.queue))
	w.queue, w.queued, w.pending = nil, 0, 0
	w.mu.Unlock()
	w.dropped.Add(n)
	if w.gone != nil {
		w.gone(err)
	}
	return false
}
