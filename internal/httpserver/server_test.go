package httpserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestShutdownWaitsForHandlers: past its grace, Shutdown cuts a request
// off and returns only once its handler has returned.
func TestShutdownWaitsForHandlers(t *testing.T) {
	entered := make(chan struct{})
	var returned atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		time.Sleep(100 * time.Millisecond) // winding up takes it a moment
		returned.Store(true)
	})}
	ln := listen(t)
	s := Start(srv, ln, func(err error) { t.Errorf("serve error: %v", err) })
	client := &http.Client{Timeout: 10 * time.Second}
	got := make(chan error, 1)
	go func() {
		resp, err := client.Get("http://" + ln.Addr().String())
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline's error", err)
	}
	if !returned.Load() {
		t.Error("Shutdown returned before the handler did")
	}
	if err := <-got; err == nil {
		t.Error("the request cut off at the shutdown got an answer")
	}
}

// TestShutdownIdle: with nothing in flight Shutdown returns at once,
// also after connections came and went.
func TestShutdownIdle(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	ln := listen(t)
	s := Start(srv, ln, nil)
	for range 3 {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %s with nothing in flight", d)
	}
}

// TestServeError: an error that ends Serve other than the shutdown is
// reported, and Shutdown still returns.
func TestServeError(t *testing.T) {
	ln := listen(t)
	reported := make(chan error, 1)
	s := Start(&http.Server{Handler: http.NotFoundHandler()}, ln, func(err error) { reported <- err })
	ln.Close()
	select {
	case err := <-reported:
		if err == nil {
			t.Error("reported a nil error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the listener's error was not reported")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}
