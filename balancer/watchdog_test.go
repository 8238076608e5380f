package balancer

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// stallingWriter is a client that takes nothing: every write blocks until
// a write deadline in the past is set, as on a connection whose send
// buffer is full, or an HTTP/2 stream whose window is zero.
type stallingWriter struct {
	header  http.Header
	stalled chan struct{} // closed by a deadline in the past
	once    sync.Once
	delay   time.Duration // when not zero, every write takes this long and succeeds
}

func newStallingWriter() *stallingWriter {
	return &stallingWriter{header: http.Header{}, stalled: make(chan struct{})}
}

func (w *stallingWriter) Header() http.Header { return w.header }
func (w *stallingWriter) WriteHeader(int)     {}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if w.delay > 0 {
		select {
		case <-time.After(w.delay):
			return len(p), nil
		case <-w.stalled:
		}
	}
	<-w.stalled
	return 0, os.ErrDeadlineExceeded
}

func (w *stallingWriter) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		w.once.Do(func() { close(w.stalled) })
	}
	return nil
}

// stallingBody is a backend that sends nothing: a read blocks until the
// request is cancelled.
type stallingBody struct {
	ctx   context.Context
	delay time.Duration // when not zero, every read takes this long and returns a byte
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if b.delay > 0 {
		select {
		case <-time.After(b.delay):
			p[0] = 'x'
			return 1, nil
		case <-b.ctx.Done():
		}
	}
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func (b *stallingBody) Close() error { return nil }

const watchTimeout = 150 * time.Millisecond

// TestSendTimeoutEndsAStalledWrite: a write the client takes nothing of
// ends after the send timeout, by a write deadline in the past, and the
// watchdog says why.
func TestSendTimeoutEndsAStalledWrite(t *testing.T) {
	sw := newStallingWriter()
	d := &watchdog{ws: newWatchers(time.Hour, watchTimeout), readTimeout: time.Hour, sendTimeout: watchTimeout, w: sw}
	w := &sendWriter{ResponseWriter: sw, d: d}
	start := time.Now()
	_, err := w.Write([]byte("x"))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v, want the deadline's error", err)
	}
	if took < watchTimeout || took > watchTimeout*9/8+time.Second {
		t.Errorf("the write ended after %s, want the send timeout, %s", took, watchTimeout)
	}
	if got := d.stop(); got != sendTimeout {
		t.Errorf("stop = %v, want sendTimeout", got)
	}
}

// TestSendTimeoutIsPerWrite: writes that each complete within the send
// timeout are never cut, however long they take together, nor is the
// time between them, when no write waits.
func TestSendTimeoutIsPerWrite(t *testing.T) {
	sw := newStallingWriter()
	sw.delay = watchTimeout * 2 / 3
	d := &watchdog{ws: newWatchers(time.Hour, watchTimeout), readTimeout: time.Hour, sendTimeout: watchTimeout, w: sw}
	w := &sendWriter{ResponseWriter: sw, d: d}
	for i := 0; i < 4; i++ {
		if _, err := w.Write([]byte("x")); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	time.Sleep(2 * watchTimeout) // idle: no write waits
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatalf("write after a pause: %v", err)
	}
	if got := d.stop(); got != notBroken {
		t.Errorf("stop = %v after writes within the timeout", got)
	}
}

// TestUpstreamTimeoutEndsAStalledRead: a read of a backend's body that
// gets nothing for the upstream timeout is ended by cancelling the
// request upstream.
func TestUpstreamTimeoutEndsAStalledRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &watchdog{ws: newWatchers(watchTimeout, time.Hour), readTimeout: watchTimeout, sendTimeout: time.Hour, w: newStallingWriter()}
	d.setCancel(cancel)
	body := &watchedBody{ReadCloser: &stallingBody{ctx: ctx}, d: d}
	start := time.Now()
	_, err := body.Read(make([]byte, 10))
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read: %v, want the request cancelled", err)
	}
	if took < watchTimeout || took > watchTimeout*9/8+time.Second {
		t.Errorf("the read ended after %s, want the upstream timeout, %s", took, watchTimeout)
	}
	if got := d.stop(); got != upstreamTimeout {
		t.Errorf("stop = %v, want upstreamTimeout", got)
	}
}

// TestUpstreamTimeoutIsPerRead: a backend that sends a little within each
// upstream timeout is never cut, nor is a pause while the proxy does not
// read (a slow client), and a stopped watchdog ends nothing.
func TestUpstreamTimeoutIsPerRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &watchdog{ws: newWatchers(watchTimeout, time.Hour), readTimeout: watchTimeout, sendTimeout: time.Hour, w: newStallingWriter()}
	d.setCancel(cancel)
	body := &watchedBody{ReadCloser: &stallingBody{ctx: ctx, delay: watchTimeout * 2 / 3}, d: d}
	for i := 0; i < 4; i++ {
		if _, err := body.Read(make([]byte, 10)); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	time.Sleep(2 * watchTimeout) // not reading
	if _, err := body.Read(make([]byte, 10)); err != nil {
		t.Fatalf("read after a pause: %v", err)
	}
	if got := d.stop(); got != notBroken {
		t.Errorf("stop = %v after reads within the timeout", got)
	}
	// Stopped: a read that stalls now is the next request's business.
	body.d.begin(&body.d.read)
	time.Sleep(2 * watchTimeout)
	if ctx.Err() != nil {
		t.Error("a stopped watchdog cancelled the request")
	}
}

// discardWriter is a client that takes everything at once.
type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header              { return w.header }
func (w *discardWriter) WriteHeader(int)                  {}
func (w *discardWriter) Write(p []byte) (int, error)      { return len(p), nil }
func (w *discardWriter) SetWriteDeadline(time.Time) error { return nil }
func (w *discardWriter) FlushError() error                { return nil }

// BenchmarkWatchdog is what the watchdog costs an ordinary request: its
// timer made and stopped, a status line, one read of the replica's body
// and one write and flush to the client, each timed.
func BenchmarkWatchdog(b *testing.B) {
	w := &discardWriter{header: http.Header{}}
	ws := newWatchers(600*time.Second, time.Minute)
	body := &watchedBody{ReadCloser: http.NoBody}
	p := make([]byte, 1024)
	b.ReportAllocs()
	for b.Loop() {
		d := &watchdog{ws: ws, readTimeout: 600 * time.Second, sendTimeout: time.Minute, w: w}
		sw := &sendWriter{ResponseWriter: w, d: d}
		body.d = d
		sw.WriteHeader(200)
		_, _ = body.Read(p)
		_, _ = sw.Write(p)
		_ = sw.FlushError()
		d.stop()
	}
}
