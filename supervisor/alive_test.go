package supervisor

import (
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestBackendAlive: the balancer is told a replica is alive while its
// process runs and passes its liveness checks: not once a check fails,
// again once one passes, and not once the process has exited.
func TestBackendAlive(t *testing.T) {
	sl := testSlotWith(t, fastLiveness(time.Hour), "/health", 10*time.Second, CrashBackoff{Initial: time.Hour}, "serve")
	first := waitState(t, sl, control.Ready, 10*time.Second)
	sl.mu.Lock()
	be := sl.cur.be
	sl.mu.Unlock()
	if be.Alive == nil || !be.Alive() {
		t.Fatal("a ready replica is not alive to the balancer")
	}
	stopProcess(t, first.Pid)
	testutil.WaitFor(t, 5*time.Second, "a failed liveness check to make it not alive", func() bool { return !be.Alive() })
	if err := syscall.Kill(first.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "a passing check to make it alive again", func() bool { return be.Alive() })
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "its exit to make it not alive", func() bool { return !be.Alive() })
}
