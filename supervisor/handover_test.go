//go:build unix

package supervisor

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestScaleDownKeepsServingWhileKeptReplicasRecover: `scale 2` while
// replica-1 and replica-2 are in crash backoff must not take replica-3 and
// replica-4 away before a kept one is ready. Before the hand-over, the
// instance had no replica in rotation for the whole backoff: the soak's
// 12 s of "no ready replica".
func TestScaleDownKeepsServingWhileKeptReplicasRecover(t *testing.T) {
	s := startTestSupervisor(t, 4, func(o *Options) {
		o.Health = "/health"
		o.Backoff = CrashBackoff{Initial: 2 * time.Second}
	}, "serve")
	defer s.stop(nil)
	st := s.Status()
	for _, r := range st.Replicas[:2] {
		if err := syscall.Kill(r.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "replica-1 and replica-2 to be in backoff", func() bool {
		st := s.Status()
		return st.Replicas[0].State == control.Backoff && st.Replicas[1].State == control.Backoff
	})

	done := make(chan struct{})
	least := make(chan int, 1)
	go func() {
		low := 4
		for {
			low = min(low, s.Readiness().Ready)
			select {
			case <-done:
				least <- low
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	res, err := s.Scale(ctx, 2)
	took := time.Since(began)
	close(done)
	if err != nil || len(res.Stopped) != 2 {
		t.Fatalf("scale 4 -> 2: %+v, %v", res, err)
	}
	if low := <-least; low < 2 {
		t.Errorf("ready replicas fell to %d during the scale-down; want at least 2 (the removed ones serve until the kept ones are ready)", low)
	}
	// The removed ones waited for the kept ones: about the backoff.
	if took < time.Second {
		t.Errorf("scale returned after %s, before the kept replicas could be ready", took)
	}
	// A removed slot leaves status just after it is done.
	testutil.WaitFor(t, 5*time.Second, "the removed replicas to leave status", func() bool { return len(s.Status().Replicas) == 2 })
	if st := s.Status(); st.Ready() != 2 {
		t.Errorf("after the scale-down: %d ready, want 2", st.Ready())
	}
}
