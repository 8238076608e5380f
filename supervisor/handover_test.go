//go:build unix

package supervisor

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

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

// TestScaleDownKeepsServingWhileFailedReplicaRevives: `scale 1` with
// replica-1 failed and replica-2 ready starts replica-1 afresh; replica-2
// must serve until it is ready, not be let go because replica-1 was seen
// failed before the scale revived it.
func TestScaleDownKeepsServingWhileFailedReplicaRevives(t *testing.T) {
	s := newTestSupervisor(t, func(o *Options) {
		o.Health = "/health"
		o.Backoff = CrashBackoff{}
		// A log destination slow to take the scale's line (a stalled
		// terminal) must not change which replica serves.
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: slowAt{"scaling", 200 * time.Millisecond}})
	}, "fail-first", t.TempDir()+"/failed-once")
	defer s.stop(nil)
	s.mu.Lock()
	s.desired = 2
	first := s.addSlotLocked(1, "")
	s.mu.Unlock()
	waitState(t, first, control.Failed, 10*time.Second)
	s.mu.Lock()
	second := s.addSlotLocked(2, "")
	s.mu.Unlock()
	waitState(t, second, control.Ready, 10*time.Second)

	done := make(chan struct{})
	least := make(chan int, 1)
	go func() {
		low := 2
		for {
			low = min(low, s.Readiness().Ready)
			select {
			case <-done:
				least <- low
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Scale(ctx, 1)
	close(done)
	if err != nil || len(res.Stopped) != 1 || len(res.Started) != 1 {
		t.Fatalf("scale 2 -> 1: %+v, %v", res, err)
	}
	if low := <-least; low < 1 {
		t.Errorf("no replica was ready during the scale-down; replica-2 should have served until the revived replica-1 was ready")
	}
	if st := s.Status(); st.Ready() != 1 {
		t.Errorf("after the scale-down: %d ready, want 1", st.Ready())
	}
}

// slowAt is a log destination that takes d to write a line holding msg.
type slowAt struct {
	msg string
	d   time.Duration
}

func (w slowAt) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.msg) {
		time.Sleep(w.d)
	}
	return len(p), nil
}
