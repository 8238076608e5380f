package e2e

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// threadsOf returns how many threads process pid has.
func threadsOf(t *testing.T, pid int) int {
	t.Helper()
	n, err := strconv.Atoi(procField(t, fmt.Sprintf("/proc/%d/status", pid), "Threads"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitAllReady waits up to d until the instance has n replicas, all
// ready; waitReady's 30 s is short for hundreds of replicas on two cores.
func (in *instance) waitAllReady(n int, d time.Duration) {
	in.t.Helper()
	testutil.WaitFor(in.t, d, fmt.Sprintf("%d ready replicas", n), func() bool {
		select {
		case <-in.done:
			in.t.Fatalf("mattingctl up exited early (%v):\n%s", in.err, in.stderr.String())
		default:
		}
		st, err := in.tryStatus()
		if err != nil {
			return false
		}
		ready := 0
		for _, r := range st.Replicas {
			if r.State == "ready" {
				ready++
			}
		}
		return ready == n && len(st.Replicas) == n
	})
}

// TestThreadsDoNotGrowWithReplicas is the target: mattingctl held
// an OS thread per replica (blocked in waitid), 1,007 at 1,000 replicas,
// each a task against a pids limit. At 200 replicas it must hold at most
// 50, and still see a replica's crash.
func TestThreadsDoNotGrowWithReplicas(t *testing.T) {
	t.Parallel()
	const replicas, maxThreads = 200, 50
	// A fixed cap of 8, so that 200 replicas fit the test's descriptor
	// limit (auto plans for its upper bound, 64 a replica).
	// Ports reserved for all of them: start's own few would leave the
	// scale's to whichever other test takes them first.
	port := testutil.FreePorts(t, replicas+8)
	in := launch(t, mattingctl, t.TempDir(), port, "up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0",
		"--replicas", "2", "--max-inflight", "8", "--", fakemodel)
	in.waitReady(2)
	atTwo := threadsOf(t, in.cmd.Process.Pid)
	if _, errOut, code := in.ctl("scale", strconv.Itoa(replicas)); code != 0 {
		t.Fatalf("scale %d: exit %d: %s", replicas, code, errOut)
	}
	in.waitAllReady(replicas, 2*time.Minute)
	at200 := threadsOf(t, in.cmd.Process.Pid)
	t.Logf("threads of mattingctl: %d at 2 replicas, %d at %d", atTwo, at200, replicas)
	if at200 > maxThreads {
		t.Errorf("mattingctl has %d threads at %d replicas, want at most %d", at200, replicas, maxThreads)
	}
	victim := in.status().Replicas[replicas-1]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the killed replica to be restarted", func() bool {
		r := in.status().Replicas[replicas-1]
		return r.Restarts == 1 && r.Pid != victim.Pid && r.State == "ready"
	})
}
