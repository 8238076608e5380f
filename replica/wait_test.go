package replica

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestCheckBackoff: the wait between readiness checks doubles from First
// to Max after each check the replica answered, and stays put after a
// refused connection, which reached no application.
func TestCheckBackoff(t *testing.T) {
	refused := &checkError{cause: "no listener", err: syscall.ECONNREFUSED}
	answered := &StatusError{Path: "/health", Code: http.StatusServiceUnavailable}
	tests := []struct {
		name string
		errs []error
		want []time.Duration
	}{
		{"answers double to the cap", []error{answered, answered, answered, answered, answered, answered, answered},
			[]time.Duration{100, 200, 400, 800, 1600, 2000, 2000}},
		{"refusals stay at the first", []error{refused, refused, refused}, []time.Duration{100, 100, 100}},
		{"a refusal keeps what answers reached", []error{answered, answered, refused, refused, answered, answered},
			[]time.Duration{100, 200, 400, 400, 400, 800}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b checkBackoff
			var got []time.Duration
			for _, err := range tt.errs {
				got = append(got, b.after(err)/time.Millisecond)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("waits (ms) = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWaitReadyBacksOff: a replica that answers 503 all along is asked far
// less often than every First.
func TestWaitReadyBacksOff(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	p := Probe{Addr: srv.Listener.Addr().String(), Path: "/health", Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := p.WaitReady(ctx, fakeProcess(), Wait{First: 10 * time.Millisecond, Max: 80 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady() = %v, want the deadline", err)
	}
	// 10+20+40 ms, then every 80 ms: 16 checks in a second; every 10 ms
	// would be 100.
	if n := calls.Load(); n < 3 || n > 20 {
		t.Errorf("%d checks in a second, want about 16", n)
	}
}

// TestWaitReadyWrongPath: a health path answered 404 for WrongPath ends
// the wait, with what the replica answered on the usual paths; a run of
// 404 that another answer breaks, or answers other than 404 and 405, do
// not.
func TestWaitReadyWrongPath(t *testing.T) {
	t.Parallel()
	var flakyOnce sync.Once
	var begun time.Time // the first /flaky check
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			w.WriteHeader(http.StatusOK)
		case "/flaky": // 404, then 503 from 150ms on, then 404 again
			flakyOnce.Do(func() { begun = time.Now() })
			if d := time.Since(begun); d > 150*time.Millisecond && d < 250*time.Millisecond {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNotFound)
		case "/post-only":
			w.WriteHeader(http.StatusMethodNotAllowed)
		case "/loading":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	const after = 200 * time.Millisecond
	wait := Wait{First: 5 * time.Millisecond, Max: 40 * time.Millisecond, WrongPath: after}
	check := func(path string, deadline time.Duration) (error, time.Duration) {
		p := Probe{Addr: srv.Listener.Addr().String(), Path: path, Timeout: 5 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		started := time.Now()
		err := p.WaitReady(ctx, fakeProcess(), wait)
		return err, time.Since(started)
	}

	err, took := check("/healthz", 10*time.Second)
	var wrong *WrongPathError
	if !errors.As(err, &wrong) {
		t.Fatalf("WaitReady(/healthz) = %v, want a *WrongPathError", err)
	}
	if took < after || took > after+time.Second {
		t.Errorf("WaitReady(/healthz) took %s, want about %s", took, after)
	}
	if want := "GET /healthz answered 404 for 200ms"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	want := []PathAnswer{{Path: "/health", Code: 200}, {Path: "/", Code: 404}}
	if !reflect.DeepEqual(wrong.Tried, want) {
		t.Errorf("Tried = %+v, want %+v", wrong.Tried, want)
	}

	if err, _ := check("/post-only", 10*time.Second); !errors.As(err, &wrong) || wrong.Code != http.StatusMethodNotAllowed {
		t.Errorf("WaitReady(/post-only) = %v, want a *WrongPathError for 405", err)
	}
	// The 503 from 150ms to 250ms starts the count again: not before 450ms.
	if err, took := check("/flaky", 10*time.Second); !errors.As(err, &wrong) || took < 400*time.Millisecond {
		t.Errorf("WaitReady(/flaky) = %v after %s, want a *WrongPathError after 450ms", err, took)
	}
	if err, _ := check("/loading", 600*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady(/loading) = %v, want the deadline: 503 is a model loading", err)
	}
}

// TestWrongPathDue: once a run of 404 has begun, the next check comes no
// later than when the run has lasted long enough to decide.
func TestWrongPathDue(t *testing.T) {
	now := time.Now()
	off := wrongPath{}
	if d := off.due(now, time.Second); d != time.Second {
		t.Errorf("off: due = %s, want 1s", d)
	}
	w := wrongPath{after: 30 * time.Second, since: now.Add(-29500 * time.Millisecond)}
	if d := w.due(now, 2*time.Second); d != 500*time.Millisecond {
		t.Errorf("due = %s, want 500ms", d)
	}
	w.since = now.Add(-time.Minute)
	if d := w.due(now, 2*time.Second); d != 0 {
		t.Errorf("past due = %s, want 0", d)
	}
}

// TestWaitReadyExitQuotesOutput: a process that exits before it is ready
// is reported with its last lines of output, each under its name.
func TestWaitReadyExitQuotesOutput(t *testing.T) {
	t.Parallel()
	proc := startHelper(t, newCapture(), "lines", "one", "two", "three", "four", "five", " * Port 5000 is in use by another program.")
	p := Probe{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t))), Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.WaitReady(ctx, proc, Wait{})
	want := "exited before becoming ready (exit code 1); its last lines of output:\n" +
		"  replica-1 | two\n  replica-1 | three\n  replica-1 | four\n  replica-1 | five\n" +
		"  replica-1 |  * Port 5000 is in use by another program."
	if err == nil || err.Error() != want {
		t.Errorf("WaitReady() = %q, want %q", err, want)
	}
}
