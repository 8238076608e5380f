package testutil

import (
	"testing"
	"time"
)

// pollInterval is how often WaitFor checks its condition: often enough
// that a test does not wait long past the moment the condition holds, and
// seldom enough that a condition which asks a server does not load it.
const pollInterval = 20 * time.Millisecond

// WaitFor polls cond until it holds or timeout passes, then fails t naming what.
// cond runs on the calling goroutine, so it may itself fail t.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pollInterval)
	}
}
