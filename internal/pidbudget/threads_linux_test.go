package pidbudget

import (
	"os"
	"testing"
	"time"
)

func threadCount(t *testing.T) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	return len(tasks)
}

// TestHoldThreads: the threads are there afterwards, idle, and stay.
func TestHoldThreads(t *testing.T) {
	before := threadCount(t)
	const n = 12
	HoldThreads(n)
	after := threadCount(t)
	if after < n+1 { // n locked at once, and the caller's own
		t.Fatalf("threads: %d before HoldThreads(%d), %d after; want about %d more", before, n, after, n)
	}
	time.Sleep(100 * time.Millisecond)
	if later := threadCount(t); later < after {
		t.Fatalf("threads fell from %d to %d: the runtime let held threads go", after, later)
	}
	t.Logf("threads: %d before, %d after HoldThreads(%d)", before, after, n)
}
