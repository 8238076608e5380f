package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crashLine is what the worker of testdata/poison prints before it
// segfaults on a poison request: counted at the replicas.
const crashLine = "crashing on a poison request"

// TestSegfaultingWorkerCrashesTwiceAtMost: gunicorn -w 1 whose worker
// segfaults on one input lives on (its arbiter starts a new worker), so
// each crash looks like a reset by a live replica. A poison POST crashes
// at most 2 workers, not every replica in turn for as long as the queue
// timeout; a repeat crashes none; ordinary requests beside it are served.
func TestSegfaultingWorkerCrashesTwiceAtMost(t *testing.T) {
	t.Parallel()
	gunicornCommand(t) // skips without gunicorn
	dir, err := filepath.Abs("testdata/poison")
	if err != nil {
		t.Fatal(err)
	}
	in := start(t, 4, "--retries", "2", "--", "gunicorn", "-w", "1", "--chdir", dir, "-b", "127.0.0.1:{port}", "wsgi:app")
	in.waitReady(4)
	l := startLoad(in.url("/legit"), 4)
	for i, want := range []string{"first", "repeat"} {
		start := time.Now()
		code, body, err := postBody(t.Context(), in.url("/predict"), `{"image": "POISON"}`)
		if err != nil || code != http.StatusBadGateway {
			t.Fatalf("%s poison POST: %d %s (%v); want 502", want, code, body, err)
		}
		t.Logf("%s poison POST answered in %s: %s", want, time.Since(start), body)
		time.Sleep(2 * time.Second) // a late crash would show by now
		if n := strings.Count(in.stdout.String()+in.stderr.String(), crashLine); n > 2 {
			t.Errorf("after %d poison POSTs, %d workers crashed; want at most 2, all from the first", i+1, n)
		}
	}
	ok, failures, _ := l.finish()
	t.Logf("worker crashes: %d; ordinary requests: %d served, %d failed",
		strings.Count(in.stdout.String()+in.stderr.String(), crashLine), ok, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d ordinary requests failed beside the poison: %v", len(failures), failures[:min(3, len(failures))])
	}
}
