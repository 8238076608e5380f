package replica

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestNewProbe(t *testing.T) {
	p := NewProbe(8007, "/healthz")
	if p.Addr != "127.0.0.1:8007" || p.Path != "/healthz" {
		t.Errorf("NewProbe(8007, /healthz) = %+v", p)
	}
}

func TestProbeCheckTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	closed := testutil.FreePort(t)

	tests := []struct {
		name    string
		addr    string
		wantErr bool
	}{
		{"listening", ln.Addr().String(), false},
		{"closed", net.JoinHostPort("127.0.0.1", strconv.Itoa(closed)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Probe{Addr: tt.addr, Timeout: 5 * time.Second}.Check(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Check() = %v, want error: %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("Check() = %v, want connection refused", err)
			}
			if want := "no listener on " + tt.addr + " (connection refused)"; tt.wantErr && err.Error() != want {
				t.Errorf("Check() = %q, want %q", err, want)
			}
		})
	}
}

func TestProbeCheckHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/created":
			w.WriteHeader(http.StatusCreated)
		case "/loading":
			http.Error(w, "model loading", http.StatusServiceUnavailable)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t)))

	tests := []struct {
		name    string
		addr    string
		path    string
		wantErr string // a substring of the error; empty means no error
	}{
		{"200", addr, "/ok", ""},
		{"201", addr, "/created", ""},
		{"503 names the path", addr, "/loading", "GET /loading -> 503"},
		{"404", addr, "/missing", "GET /missing -> 404"},
		{"redirect is not followed", addr, "/redirect", "GET /redirect -> 302"},
		{"connection refused", closed, "/ok", "no listener on " + closed + " (connection refused)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Probe{Addr: tt.addr, Path: tt.path, Timeout: 5 * time.Second}.Check(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Check() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("Check() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestProbeCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	start := time.Now()
	err := Probe{Addr: srv.Listener.Addr().String(), Path: "/slow", Timeout: 200 * time.Millisecond}.Check(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Check() = %v, want a deadline error", err)
	}
	if want := "GET /slow: no answer within 200ms"; err.Error() != want {
		t.Errorf("Check() = %q, want %q", err, want)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Check took %s with a 200ms timeout", elapsed)
	}
}

// fakeProcess is a Process that has not exited, for WaitReady.
func fakeProcess() *Process { return &Process{done: make(chan struct{})} }

func TestWaitReadyPasses(t *testing.T) {
	t.Parallel()
	// The server answers 503 three times, as a model still loading would.
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	p := Probe{Addr: srv.Listener.Addr().String(), Path: "/healthz", Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx, fakeProcess(), Wait{First: 20 * time.Millisecond, Max: 20 * time.Millisecond}); err != nil {
		t.Fatalf("WaitReady() = %v, want nil", err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d checks, want 4 (three failures, then success)", n)
	}
}

func TestWaitReadyProcessExits(t *testing.T) {
	t.Parallel()
	proc := startHelper(t, newCapture(), "exit", "2")
	p := Probe{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t))), Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.WaitReady(ctx, proc, Wait{First: 20 * time.Millisecond})
	var exited *ErrExited
	if !errors.As(err, &exited) {
		t.Fatalf("WaitReady() = %v, want *ErrExited", err)
	}
	if exited.Exit != (Exit{Code: 2}) {
		t.Errorf("ErrExited.Exit = %+v, want exit code 2", exited.Exit)
	}
	if want := "exited before becoming ready (exit code 2)"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}

func TestWaitReadyDeadline(t *testing.T) {
	t.Parallel()
	p := Probe{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t))), Timeout: time.Second}
	const wait = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	err := p.WaitReady(ctx, fakeProcess(), Wait{First: 20 * time.Millisecond, Max: 20 * time.Millisecond})
	elapsed := time.Since(start)
	var notReady *NotReadyError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &notReady) {
		t.Fatalf("WaitReady() = %v, want a *NotReadyError for context.DeadlineExceeded", err)
	}
	// The check the deadline cut short does not hide the refusals before it.
	want := "no listener on " + p.Addr + " (connection refused)"
	if notReady.Last == nil || notReady.Last.Error() != want {
		t.Errorf("last check = %v, want %q", notReady.Last, want)
	}
	if msg := err.Error(); msg != "context deadline exceeded; last check: "+want {
		t.Errorf("WaitReady() = %q, want the last check's failure in it", msg)
	}
	if elapsed < wait || elapsed > 10*time.Second {
		t.Errorf("WaitReady returned after %s with a %s deadline", elapsed, wait)
	}
}

// TestProbeCheckNoAnswer: a replica that accepts the connection and closes
// it, or resets it, without answering reads as that, not as the HTTP
// client's text.
func TestProbeCheckNoAnswer(t *testing.T) {
	for _, tt := range []struct {
		name  string
		reset bool
		want  string
	}{
		{"closed", false, "GET /health: connection closed without an answer"},
		{"reset", true, "GET /health: connection reset"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					// Read the request first: closing with unread data
					// resets the connection whatever was asked.
					_, _ = c.Read(make([]byte, 4096))
					if tt.reset {
						_ = c.(*net.TCPConn).SetLinger(0)
					}
					c.Close()
				}
			}()
			err = Probe{Addr: ln.Addr().String(), Path: "/health", Timeout: 5 * time.Second}.Check(context.Background())
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Check() = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestWaitReadyProgress: while the replica is not ready, WaitReady reports
// every Every why it is not, and the error at the deadline names the last
// cause.
func TestWaitReadyProgress(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	p := Probe{Addr: srv.Listener.Addr().String(), Path: "/xyz", Timeout: 5 * time.Second}
	var mu sync.Mutex
	var reports []string
	progress := Progress{Every: 100 * time.Millisecond, Report: func(waited time.Duration, last error) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, fmt.Sprintf("%s %v", waited.Round(100*time.Millisecond), last))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 550*time.Millisecond)
	defer cancel()
	started := time.Now()
	err := p.WaitReady(ctx, fakeProcess(), Wait{First: 20 * time.Millisecond, Max: 20 * time.Millisecond, Progress: progress})
	took := time.Since(started)
	if want := "context deadline exceeded; last check: GET /xyz -> 404"; err == nil || err.Error() != want {
		t.Fatalf("WaitReady() = %v, want %q", err, want)
	}
	var status *StatusError
	if !errors.As(err, &status) || status.Code != http.StatusNotFound {
		t.Errorf("WaitReady() = %v, want the *StatusError of the last check in it", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Five reports on an idle machine; a busy one may lose the last, or
	// notice the deadline late, after a sixth: never more than one per
	// 100ms that WaitReady ran.
	if most := int(took / progress.Every); len(reports) < 3 || len(reports) > max(5, most) {
		t.Fatalf("%d reports in %s (a 550ms deadline) at every 100ms, want about 5: %q", len(reports), took.Round(time.Millisecond), reports)
	}
	if reports[0] != "100ms GET /xyz -> 404" {
		t.Errorf("first report %q, want %q", reports[0], "100ms GET /xyz -> 404")
	}
}
