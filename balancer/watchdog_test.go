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
	d := &watchdog{readTimeout: time.Hour, sendTimeout: watchTimeout, w: sw}
	w := &sendWriter{ResponseWriter: sw, d: d}
	start := time.Now()
	_, err := w.Write([]byte("x"))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v, want the deadline's error", err)
	}
	if took < watchTimeout || took > watchTimeout+time.Second {
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
	d := &watchdog{readTimeout: time.Hour, sendTimeout: watchTimeout, w: sw}
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
	d := &watchdog{readTimeout: watchTimeout, sendTimeout: time.Hour, w: newStallingWriter()}
	d.setCancel(cancel)
	body := &watchedBody{ReadCloser: &stallingBody{ctx: ctx}, d: d}
	start := time.Now()
	_, err := body.Read(make([]byte, 10))
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read: %v, want the request cancelled", err)
	}
	if took < watchTimeout || took > watchTimeout+time.Second {
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
	d := &watchdog{readTimeout: watchTimeout, sendTimeout: time.Hour, w: newStallingWriter()}
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
	body.d.begin(&body.d.reading)
	time.Sleep(2 * watchTimeout)
	if ctx.Err() != nil {
		t.Error("a stopped watchdog cancelled the request")
	}
}
