package nonblock

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// gate is a destination that blocks every Write until the test lets it
// through, and reports each Write as it begins.
type gate struct {
	started chan string   // each Write's text, as it begins
	open    chan struct{} // closed: Writes pass
	permit  chan struct{} // a token lets one Write pass

	mu  sync.Mutex
	out bytes.Buffer
}

func newGate() *gate {
	return &gate{started: make(chan string, 1000), open: make(chan struct{}), permit: make(chan struct{}, 1000)}
}

func (g *gate) Write(p []byte) (int, error) {
	select {
	case g.started <- string(p):
	default: // nobody is counting any more
	}
	select {
	case <-g.open:
	case <-g.permit:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(p)
}

func (g *gate) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.String()
}

// recv receives from c or fails t after five seconds.
func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// line is the i-th test line: ten bytes, newline included.
func line(i int) string { return fmt.Sprintf("ln %06d\n", i) }

// writeAll writes lines from..to-1 and fails t unless they are written
// within two seconds: a Writer must not block on its destination.
func writeAll(t *testing.T, w io.Writer, from, to int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		for i := from; i < to; i++ {
			if n, err := io.WriteString(w, line(i)); n != 10 || err != nil {
				errc <- fmt.Errorf("Write = %d, %v; want 10, nil", n, err)
				return
			}
		}
		errc <- nil
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("writing lines %d-%d blocked: the destination blocks, the writer must not", from, to-1)
	}
}

func lines(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(line(i))
	}
	return b.String()
}

// TestBlockedDestination: while the destination blocks, the producer never
// blocks; the queue holds exactly Buffer bytes, the rest is dropped and
// counted, and when writing resumes a warning says how many were dropped,
// in the place of the lost lines, with order kept.
func TestBlockedDestination(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{Buffer: 10 * (10 + LineCost)}) // ten lines
	writeAll(t, w, 0, 1)
	if got := recv(t, g.started, "the first write"); got != line(0) {
		t.Fatalf("first write %q, want %q", got, line(0))
	}
	// Line 0 is being written and blocks; lines 1-10 fill the buffer to
	// the byte; 11-9999 are dropped.
	writeAll(t, w, 1, 10_000)
	if got, want := w.Dropped(), uint64(10_000-11); got != want {
		t.Fatalf("Dropped = %d, want %d", got, want)
	}
	close(g.open)
	want := lines(0, 11) + "mattingctl: dropped 9989 lines while output was blocked\n"
	testutil.WaitFor(t, 5*time.Second, "the queue and the warning written", func() bool { return g.String() == want })
	writeAll(t, w, 10_000, 10_005)
	want += lines(10_000, 10_005)
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush")
	}
	if got := g.String(); got != want {
		t.Fatalf("destination got\n%s\nwant\n%s", got, want)
	}
	if got := w.Dropped(); got != 9989 {
		t.Fatalf("Dropped = %d after resuming, want 9989", got)
	}
}

// TestWarningBeforeTheNextLine: lines dropped in the middle of the stream are
// reported where they were lost, before the first line queued after them,
// and a full queue accepts lines again only once it has drained to half.
func TestWarningBeforeTheNextLine(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{Buffer: 4 * (10 + LineCost)}) // four lines
	writeAll(t, w, 0, 1)
	recv(t, g.started, "line 0") // line 0 blocks
	writeAll(t, w, 1, 7)         // 1-4 queued, 5 and 6 dropped: full
	g.permit <- struct{}{}       // line 0 written
	if got := recv(t, g.started, "the second write"); got != line(1) {
		t.Fatalf("second write %q, want %q", got, line(1))
	}
	// Queue: 2, 3, 4 (three lines of four, above half): still dropping.
	writeAll(t, w, 7, 8)
	g.permit <- struct{}{}       // line 1 written
	recv(t, g.started, "line 2") // line 2 blocks; queue: 3, 4 (half)
	testutil.WaitFor(t, 5*time.Second, "line 2 taken off the queue", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.queued == 2*(10+LineCost)
	})
	writeAll(t, w, 8, 9) // accepted again, after the gap 5-7
	close(g.open)
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush")
	}
	want := lines(0, 5) + "mattingctl: dropped 3 lines while output was blocked\n" + line(8)
	if got := g.String(); got != want {
		t.Fatalf("destination got\n%s\nwant\n%s", got, want)
	}
}

// TestBufferBound: a line that fills the buffer to the byte is queued; a
// byte more is dropped; a line longer than the buffer is always dropped.
func TestBufferBound(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{Buffer: 25 + LineCost})
	_, _ = io.WriteString(w, "x\n")
	recv(t, g.started, "the first write")
	_, _ = io.WriteString(w, strings.Repeat("a", 24)+"\n") // 25: fits exactly
	if w.Dropped() != 0 {
		t.Fatalf("a line of exactly the buffer was dropped")
	}
	_, _ = io.WriteString(w, "b\n")
	if w.Dropped() != 1 {
		t.Fatalf("Dropped = %d past the buffer, want 1", w.Dropped())
	}
	close(g.open)
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush")
	}

	w = NewWriter(io.Discard, Options{Buffer: 25 + LineCost})
	_, _ = io.WriteString(w, strings.Repeat("c", 26))
	w.Close(5 * time.Second)
	if w.Dropped() != 1 {
		t.Fatalf("a line longer than the buffer: Dropped = %d, want 1", w.Dropped())
	}
}

// TestDefaultBuffer: with no Buffer set, the queue holds DefaultBuffer bytes.
func TestDefaultBuffer(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{})
	_, _ = io.WriteString(w, "x\n")
	recv(t, g.started, "the first write")
	chunk := strings.Repeat("z", 1024-LineCost-1) + "\n"
	for i := 0; i < DefaultBuffer/1024; i++ {
		_, _ = io.WriteString(w, chunk)
	}
	if w.Dropped() != 0 {
		t.Fatalf("dropped %d lines within DefaultBuffer", w.Dropped())
	}
	_, _ = io.WriteString(w, "one more\n")
	if w.Dropped() != 1 {
		t.Fatalf("Dropped = %d past DefaultBuffer, want 1", w.Dropped())
	}
	close(g.open)
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush")
	}
}

// TestBrokenPipe: a pipe whose reader has gone fails with EPIPE (the
// process must have SIGPIPE handled for that, as Go's runtime would
// otherwise kill it for fd 1 and 2): the Writer stops writing, calls Gone
// once, and counts every line from then on as dropped.
func TestBrokenPipe(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	r.Close()
	var goneErr error
	goneCalls := 0
	gone := make(chan struct{}, 1)
	w := NewWriter(pw, Options{Gone: func(err error) {
		goneCalls++
		goneErr = err
		gone <- struct{}{}
	}})
	writeAll(t, w, 0, 1)
	recv(t, gone, "Gone to be called")
	writeAll(t, w, 1, 100)
	w.Close(5 * time.Second)
	if goneCalls != 1 || !errors.Is(goneErr, syscall.EPIPE) {
		t.Fatalf("Gone called %d times with %v; want once with EPIPE", goneCalls, goneErr)
	}
	if w.Dropped() != 100 {
		t.Fatalf("Dropped = %d, want 100", w.Dropped())
	}
}

// TestCloseBlocked: Close gives up on a destination that stays blocked, and
// lines written after Close are dropped.
func TestCloseBlocked(t *testing.T) {
	g := newGate()
	defer close(g.open)
	w := NewWriter(g, Options{})
	writeAll(t, w, 0, 2)
	recv(t, g.started, "the first write")
	start := time.Now()
	if w.Close(100 * time.Millisecond) {
		t.Fatal("Close reported a flush to a blocked destination")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %s, want about its timeout", d)
	}
	writeAll(t, w, 2, 3)
	if w.Dropped() != 1 {
		t.Fatalf("Dropped = %d after Close, want 1", w.Dropped())
	}
}

func TestWarningText(t *testing.T) {
	if got := WarningText(1); got != "dropped 1 line while output was blocked" {
		t.Errorf("WarningText(1) = %q", got)
	}
	if got := WarningText(7); got != "dropped 7 lines while output was blocked" {
		t.Errorf("WarningText(7) = %q", got)
	}
}

// TestShortLinesBounded: a flood of one-byte lines is bounded by LineCost, so
// the queue's bookkeeping cannot outgrow the buffer.
func TestShortLinesBounded(t *testing.T) {
	g := newGate()
	w := NewWriter(g, Options{})
	_, _ = io.WriteString(w, "\n")
	recv(t, g.started, "the first write")
	for range 100_000 {
		_, _ = io.WriteString(w, "\n")
	}
	if got, want := w.Dropped(), uint64(100_000-DefaultBuffer/(1+LineCost)); got != want {
		t.Fatalf("Dropped = %d, want %d", got, want)
	}
	close(g.open)
	if !w.Close(5 * time.Second) {
		t.Fatal("Close did not flush")
	}
}
