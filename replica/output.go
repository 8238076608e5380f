package replica

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattingctl/mattingctl/internal/nonblock"
)

// maxLine bounds one line of replica output; a longer line is passed on in
// pieces of this size, each with the prefix.
const maxLine = 64 << 10

// Output passes replicas' output through line by line, each line prefixed
// with the replica's name ("replica-2 | ..."), so that lines from different
// replicas never interleave mid-line.
//
// An Output made by NewOutput never blocks a replica: its pipes are always
// read, and lines its destinations cannot take are dropped and counted (see
// package nonblock). An Output built as a struct writes to Stdout and
// Stderr directly, and blocks when they do.
type Output struct {
	// Stdout and Stderr receive the replicas' stdout and stderr lines.
	Stdout, Stderr io.Writer
	// Width pads names to this many characters so the bars line up; zero
	// means no padding.
	Width int
	// Rate bounds each replica's output passed on, stdout and stderr
	// together, in bytes a second with a second's burst; lines past it are
	// dropped, counted in RateDropped and reported in the replica's own
	// output at most every 10 seconds. Zero means no bound. Set it before
	// the first Start. An Output made by NewOutput also reads no more than
	// skimRate a second of the lines it drops, from all replicas together:
	// past that, a replica's writes wait.
	Rate int64

	mu     sync.Mutex // serialises writes to Stdout and Stderr
	parent *Output    // the Output shared (Share), whose mu serialises them; nil: none

	writers []*nonblock.Writer // Stdout and Stderr, once each, for Dropped
	owned   []*nonblock.Writer // the ones NewOutput made, for Close

	rateDropped atomic.Uint64
	pace        *rateLimiter // bounds all skims' reads together (skimRate); nil: none
}

// OutputCloseTimeout bounds how long Close waits for queued lines to be
// written to a destination that has stopped taking them.
const OutputCloseTimeout = 2 * time.Second

// NewOutput returns an Output to stdout and stderr (nil: discard) that
// never blocks. A destination that is already a *nonblock.Writer is used as
// it is and left open by Close, so that the caller can share it, with its
// own log for one; any other is wrapped in a nonblock.Writer that Close
// stops. The same writer given twice gets one queue, which keeps the order
// of stdout and stderr lines.
func NewOutput(stdout, stderr io.Writer, width int) *Output {
	o := &Output{Width: width, pace: newRateLimiter(skimRate)}
	wrap := func(w io.Writer) io.Writer {
		if w == nil || w == io.Discard {
			return io.Discard
		}
		nw, ok := w.(*nonblock.Writer)
		if !ok {
			nw = nonblock.NewWriter(w, nonblock.Options{})
			o.owned = append(o.owned, nw)
		}
		o.writers = append(o.writers, nw)
		return nw
	}
	o.Stdout = wrap(stdout)
	// Interfaces holding uncomparable values panic on ==.
	if stderr != nil && reflect.TypeOf(stderr).Comparable() && stderr == stdout {
		o.Stderr = o.Stdout
		return o
	}
	o.Stderr = wrap(stderr)
	return o
}

// Dropped is how many lines the Output's destinations could not take:
// written while they were blocked past their buffer, or after they had
// gone. A destination shared with another producer (mattingctl's log)
// counts that producer's lines too.
func (o *Output) Dropped() uint64 {
	var n uint64
	for _, w := range o.writers {
		n += w.Dropped()
	}
	return n
}

// Share returns an Output to o's destinations, for other replicas (those
// of another service in the same instance): its lines go through o's
// queues, its dropped output is read within o's skimRate, and it counts
// its own RateDropped. Close o, not it; its Dropped is o's.
func (o *Output) Share(width int) *Output {
	return &Output{Stdout: o.Stdout, Stderr: o.Stderr, Width: width, parent: o, writers: o.writers, pace: o.pace}
}

// RateDropped is how many lines of replica output were dropped because a
// replica wrote more than Rate.
func (o *Output) RateDropped() uint64 { return o.rateDropped.Load() }

// Close writes what is queued for the writers NewOutput made, for at most
// OutputCloseTimeout each, and stops them. Lines from replicas still
// running are dropped from then on.
func (o *Output) Close() {
	for _, w := range o.owned {
		w.Close(OutputCloseTimeout)
	}
}

// copyLines passes r's lines to w, each prefixed with name, while lim
// (nil: no limit) has room; past it they are dropped (rateLimiter.skim),
// and a notice says so, at once and then at most every rateNoticeEvery.
func (o *Output) copyLines(w io.Writer, name string, r io.ReadCloser, lim *rateLimiter) {
	o.copyTail(w, name, r, lim, nil)
}

// copyTail is copyLines that also keeps the lines passed on in tail (nil:
// nowhere).
func (o *Output) copyTail(w io.Writer, name string, r io.ReadCloser, lim *rateLimiter, tail *lineTail) {
	defer r.Close()
	if o.Width > len(name) {
		name += strings.Repeat(" ", o.Width-len(name))
	}
	prefix := []byte(name + " | ")
	notice := func(n uint64) {
		if n > 0 {
			o.write(w, append(append([]byte(nil), prefix...), rateNotice(n, lim.rate)...))
		}
	}
	br := bufio.NewReaderSize(r, maxLine)
	var buf, chunk []byte
	split := false // the previous piece ended a full buffer, not a line
	for {
		if lim != nil && !lim.room() {
			if chunk == nil {
				chunk = make([]byte, skimChunk)
			}
			dl, _ := r.(deadliner)
			n, err := lim.skim(br, dl, o.pace, chunk, split)
			o.rateDropped.Add(n)
			notice(lim.dropped(n))
			if err != nil {
				notice(lim.flush())
				return
			}
			split = false
			continue
		}
		line, err := br.ReadSlice('\n')
		// A line of a multiple of maxLine bytes leaves only its newline
		// for the last piece; that piece ends the line already written.
		if len(line) > 0 && !(split && len(line) == 1 && line[0] == '\n') {
			buf = append(append(buf[:0], prefix...), line...)
			if buf[len(buf)-1] != '\n' {
				buf = append(buf, '\n')
			}
			lim.spend(len(buf))
			o.write(w, buf)
			tail.add(line)
		}
		split = errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !split {
			if lim != nil {
				notice(lim.flush())
			}
			return
		}
	}
}

// write writes one line to w, whole.
func (o *Output) write(w io.Writer, line []byte) {
	mu := &o.mu
	if o.parent != nil {
		mu = &o.parent.mu
	}
	mu.Lock()
	_, _ = w.Write(line)
	mu.Unlock()
}
