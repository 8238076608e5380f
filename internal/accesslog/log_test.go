package accesslog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// blockingWriter blocks every Write until released, as a disk that has
// stopped answering does, then records what is written.
type blockingWriter struct {
	release chan struct{}
	entered chan struct{} // a token each time a Write starts
	mu      sync.Mutex
	buf     bytes.Buffer
}

func newBlockingWriter() *blockingWriter {
	return &blockingWriter{release: make(chan struct{}), entered: make(chan struct{}, 1)}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *blockingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestBlockedWriterDropsAndNeverBlocks: with the destination blocked, Log
// returns at once for every record; those past the queue are dropped and
// counted; once the destination takes writes again, the queued lines are
// written and a warning says how many were dropped.
func TestBlockedWriterDropsAndNeverBlocks(t *testing.T) {
	dst := newBlockingWriter()
	logs := &testutil.SyncBuffer{}
	l := New(Options{Path: Stdout, Stdout: dst, Format: Combined, Queue: 16, FlushEvery: time.Millisecond,
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs})})
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	l.Log(sample)
	<-dst.entered // the writer is stuck in Write, with one line
	const n = 10000
	start := time.Now()
	for range n {
		l.Log(sample)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("%d Log calls took %s with the destination blocked", n, d)
	}
	// 16 wait in the queue; the rest are dropped.
	if got, want := l.Dropped(), uint64(n-16); got != want {
		t.Errorf("dropped %d, want %d", got, want)
	}
	close(dst.release)
	testutil.WaitFor(t, 5*time.Second, "the queue drained", func() bool { return len(l.records) == 0 })
	l.Log(sample) // written after the drops
	if !l.Close(5 * time.Second) {
		t.Fatal("Close timed out")
	}
	if got, want := strings.Count(dst.String(), "\n"), 1+16+1; got != want {
		t.Errorf("%d lines written, want %d", got, want)
	}
	if !strings.Contains(logs.String(), "access log lines dropped") || !strings.Contains(logs.String(), "dropped=9984") {
		t.Errorf("no warning with the count when writing resumed; log:\n%s", logs.String())
	}
}

// TestFlushedEverySecond: a line is written out within FlushEvery, without
// waiting for the buffer to fill or for Close.
func TestFlushedEveryInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l := New(Options{Path: path, Format: JSON, FlushEvery: 50 * time.Millisecond})
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	defer l.Close(time.Second)
	l.Log(sample)
	testutil.WaitFor(t, 2*time.Second, "the line in the file", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), "\n") == 1
	})
}

// TestCloseWritesQueued: Close writes what was logged before it, and drops
// and counts what is logged after.
func TestCloseWritesQueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("earlier line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := New(Options{Path: path, Format: Combined, FlushEvery: time.Hour})
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		l.Log(sample)
	}
	if !l.Close(5 * time.Second) {
		t.Fatal("Close timed out")
	}
	l.Log(sample)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "earlier line\n") {
		t.Errorf("the file was not appended to: %.40q", b)
	}
	if got := strings.Count(string(b), "\n"); got != 1001 {
		t.Errorf("%d lines, want 1001", got)
	}
	if l.Dropped() != 1 {
		t.Errorf("dropped %d, want the 1 logged after Close", l.Dropped())
	}
}

// TestReopen: after the file is renamed (logrotate) and Reopen, new lines
// go to a new file at the path; the lines before stay in the renamed one.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l := New(Options{Path: path, Format: Combined, FlushEvery: time.Hour})
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	l.Log(sample)
	l.Log(sample)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	// The reopen is handled after the records queued before it.
	testutil.WaitFor(t, time.Second, "the queue empty", func() bool { return len(l.records) == 0 })
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Log(sample)
	l.Close(5 * time.Second)
	for file, want := range map[string]int{path + ".1": 2, path: 1} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(string(b), "\n"); got != want {
			t.Errorf("%s: %d lines, want %d", filepath.Base(file), got, want)
		}
	}
}

// TestReopenFailureKeepsFile: when the path cannot be opened again, the
// log goes on in the file it has.
func TestReopenFailureKeepsFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "access.log")
	l := New(Options{Path: path, Format: Combined, FlushEvery: time.Hour})
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sub, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen succeeded with its directory gone")
	}
	l.Log(sample)
	l.Close(5 * time.Second)
	b, _ := os.ReadFile(filepath.Join(dir, "moved", "access.log"))
	if strings.Count(string(b), "\n") != 1 {
		t.Errorf("the line did not go to the file open before: %q", b)
	}
}

func TestStartNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "access.log")
	err := New(Options{Path: path}).Start()
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Start: %v; want an error naming %s", err, path)
	}
}

// failingWriter fails every write, as a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

func TestWriteErrorsCounted(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	l := New(Options{Path: Stdout, Stdout: failingWriter{}, FlushEvery: time.Hour,
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs})})
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		l.Log(sample)
	}
	l.Close(5 * time.Second)
	if l.Dropped() != 10 {
		t.Errorf("dropped %d, want 10", l.Dropped())
	}
	if n := strings.Count(logs.String(), "writing the access log failed"); n != 1 {
		t.Errorf("%d error lines, want 1:\n%s", n, logs.String())
	}
}

func TestNilLog(t *testing.T) {
	var l *Log
	if l.Start() != nil || l.Reopen() != nil || !l.Close(time.Second) || l.Dropped() != 0 {
		t.Fatal("a nil *Log is not a no-op")
	}
}
