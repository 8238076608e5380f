package accesslog

import (
	"bufio"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults for the zero values of Options.
const (
	// DefaultQueue is enough records for a quarter of a second at 16,000
	// requests a second (the proxy's order of magnitude on two cores),
	// about 1 MiB.
	DefaultQueue = 4096
	// DefaultFlushEvery bounds how late a line reaches the file.
	DefaultFlushEvery = time.Second
	// bufferSize is the write buffer: a write(2) every few hundred lines.
	bufferSize = 64 << 10
	// warnEvery spaces the warnings about dropped lines, so that a
	// destination just slower than the requests, dropping every other
	// line, does not flood mattingctl's log.
	warnEvery = 10 * time.Second
	// batchPause is how long the writing goroutine lets records gather
	// after a batch rather than be woken for each: waking a parked
	// goroutine costs the request that sends to it a futex call, a few
	// microseconds, where a send to a queue nobody waits on costs tens
	// of nanoseconds. The queue holds DefaultQueue records a pause: 400,000
	// lines a second.
	batchPause = 10 * time.Millisecond
)

// Stdout is the Path that means Options.Stdout.
const Stdout = "-"

// Options configure a Log.
type Options struct {
	// Path is the file the log is appended to, created if missing, or
	// Stdout for the Stdout writer.
	Path string
	// Stdout is where the log goes when Path is Stdout. It is not closed.
	Stdout io.Writer
	// Format is how lines are written.
	Format Format
	// Queue bounds the records waiting to be written; past it they are
	// dropped. Zero means DefaultQueue.
	Queue int
	// FlushEvery is how often buffered lines are written out. Zero means
	// DefaultFlushEvery.
	FlushEvery time.Duration
	// Logger receives the log's own warnings (lines dropped, a failed
	// write or reopen). Nil means none.
	Logger hclog.Logger
}

// Log is an access log. Log never blocks: records wait in a bounded queue
// for one goroutine that formats and writes them, through a buffer flushed
// every FlushEvery and at Close. Records that find the queue full (the
// destination is slower than the requests, or blocked) are dropped and
// counted, and a warning is logged when writing resumes.
//
// A Log does nothing until Start; a nil *Log drops nothing and writes
// nothing.
type Log struct {
	opts    Options
	records chan Record
	reopen  chan chan error
	stop    chan struct{}
	done    chan struct{} // closed when the writing goroutine returns
	started atomic.Bool
	closed  atomic.Bool
	dropped atomic.Uint64 // ever
	pending atomic.Uint64 // since the last warning
	once    sync.Once     // guards closing stop

	// Owned by the writing goroutine once started.
	file     *os.File // nil when writing to Stdout
	w        *bufio.Writer
	line     []byte
	buffered uint64 // lines in w not yet written out
	failing  bool   // the last write failed; warned already
	warned   time.Time
}

// New returns a Log with opts that has started nothing.
func New(opts Options) *Log {
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	return &Log{
		opts:    opts,
		records: make(chan Record, opts.Queue),
		reopen:  make(chan chan error),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Start opens the destination, a file for append, and starts writing.
// The error is the file's (it names the path).
func (l *Log) Start() error {
	if l == nil {
		return nil
	}
	var dst io.Writer = l.opts.Stdout
	if l.opts.Path != Stdout {
		f, err := openFile(l.opts.Path)
		if err != nil {
			return err
		}
		l.file, dst = f, f
	}
	if dst == nil {
		dst = io.Discard
	}
	l.w = bufio.NewWriterSize(dst, bufferSize)
	l.started.Store(true)
	go l.run()
	return nil
}

// Log queues rec to be written, or drops and counts it when the queue is
// full or the Log is closed. It never blocks.
func (l *Log) Log(rec Record) {
	if l.closed.Load() {
		l.drop()
		return
	}
	select {
	case l.records <- rec:
	default:
		l.drop()
	}
}

func (l *Log) drop() {
	l.dropped.Add(1)
	l.pending.Add(1)
}

// Dropped is how many lines were dropped so far.
func (l *Log) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Reopen closes the log's file and opens its path again, after the lines
// buffered so far are written to the old one: logrotate's usual
// postrotate. On failure the old file is kept and the error returned.
// Writing to Stdout, or before Start or after Close, it does nothing.
func (l *Log) Reopen() error {
	if l == nil || l.opts.Path == Stdout || !l.started.Load() {
		return nil
	}
	reply := make(chan error, 1)
	select {
	case l.reopen <- reply:
		return <-reply
	case <-l.done:
		return nil
	}
}

// Close stops the log: records logged from now on are dropped, and the
// queued ones are written, for at most timeout; then the file is closed.
// It reports whether all were written; if not, the writing goroutine is
// left blocked in the destination's Write (nothing interrupts a blocked
// write(2)), which is harmless in a process about to exit.
func (l *Log) Close(timeout time.Duration) bool {
	if l == nil {
		return true
	}
	l.closed.Store(true)
	if !l.started.Load() {
		return true
	}
	l.once.Do(func() { close(l.stop) })
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-l.done:
		return true
	case <-t.C:
		return false
	}
}

func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(l.opts.FlushEvery)
	defer tick.Stop()
	for {
		select {
		case rec := <-l.records:
			l.write(&rec)
			l.drain()
			time.Sleep(batchPause)
		case <-tick.C:
			l.flush()
		case reply := <-l.reopen:
			reply <- l.reopenFile()
		case <-l.stop:
			l.drain()
			l.flush()
			l.warnDropped()
			if l.file != nil {
				_ = l.file.Close()
			}
			return
		}
	}
}

// drain writes the records queued.
func (l *Log) drain() {
	for {
		select {
		case rec := <-l.records:
			l.write(&rec)
		default:
			return
		}
	}
}

// write formats rec and buffers it, writing the buffer out first when the
// line does not fit: every write(2) holds whole lines, so that a line is
// never split among other writers' output on a shared stdout, nor across
// a rotation.
func (l *Log) write(rec *Record) {
	if l.pending.Load() > 0 && time.Since(l.warned) >= warnEvery {
		l.warnDropped()
	}
	l.line = l.opts.Format.Append(l.line[:0], rec)
	if l.w.Available() < len(l.line) {
		l.flush()
	}
	if _, err := l.w.Write(l.line); err != nil {
		l.failed(err, 1)
		return
	}
	l.buffered++
}

// warnDropped logs how many lines were dropped since it last did.
func (l *Log) warnDropped() {
	if n := l.pending.Swap(0); n > 0 {
		l.warned = time.Now()
		l.opts.Logger.Warn("access log lines dropped: the log could not keep up with the requests", "dropped", n, "path", l.opts.Path)
	}
}

// flush writes out the buffered lines.
func (l *Log) flush() {
	if l.w.Buffered() == 0 {
		return
	}
	if err := l.w.Flush(); err != nil {
		l.failed(err, 0)
		return
	}
	l.buffered = 0
	if l.failing {
		l.failing = false
		l.opts.Logger.Info("writing the access log again", "path", l.opts.Path)
	}
}

// failed counts the buffered lines, and lost more, as dropped after a
// failed write (a full disk), warns once until a write succeeds, and
// starts a fresh buffer: bufio.Writer keeps failing after one error.
func (l *Log) failed(err error, lost uint64) {
	l.dropped.Add(l.buffered + lost)
	l.buffered = 0
	if !l.failing {
		l.failing = true
		l.opts.Logger.Error("writing the access log failed; its lines are dropped until a write succeeds", "path", l.opts.Path, "error", err)
	}
	l.w.Reset(l.dst())
}

func (l *Log) dst() io.Writer {
	if l.file != nil {
		return l.file
	}
	if l.opts.Stdout != nil {
		return l.opts.Stdout
	}
	return io.Discard
}

// reopenFile writes out the buffer to the current file, then opens the
// path again and closes the old file.
func (l *Log) reopenFile() error {
	l.flush()
	f, err := openFile(l.opts.Path)
	if err != nil {
		l.opts.Logger.Error("reopening the access log failed; writing on to the file open before", "error", err)
		return err
	}
	old := l.file
	l.file = f
	l.w.Reset(f)
	_ = old.Close()
	return nil
}
