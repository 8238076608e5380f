package e2e

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestReplicaRestartsAfterFdExhaustion is a transient start error:
// mattingctl runs out of file descriptors, a replica is killed, and its
// restart fails with "too many open files". Once descriptors are free
// again, the replica comes back ready, not failed; the other replica's
// liveness checks, which could not open a socket meanwhile, do not count
// against it. Every listener of mattingctl is capped within its budget,
// so no client can take its last descriptors: the test lowers its
// soft open-file limit on the running process instead (prlimit), to the
// lowest descriptor number free, and raises it again.
func TestReplicaRestartsAfterFdExhaustion(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	port := testutil.FreePorts(t, 2+8)
	in := launch(t, "/bin/sh", home, port, "-c", `ulimit -n 1024 && exec "$0" "$@"`, mattingctl,
		"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--replicas", "2",
		"--max-inflight", "1", "--health-interval", "250ms", "--unhealthy-after", "2", "--", fakemodel)
	before := in.waitReady(2)

	pid := in.cmd.Process.Pid
	// The soft limit only: lowering the hard one could not be undone
	// without CAP_SYS_RESOURCE.
	setLimit := func(n uint64) {
		t.Helper()
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: 1024}, nil); err != nil {
			t.Fatalf("prlimit --pid %d --nofile=%d:1024: %v", pid, n, err)
		}
	}
	defer setLimit(1024)
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Skip(err)
	}
	open := map[uint64]bool{}
	for _, fd := range fds {
		if n, err := strconv.ParseUint(fd.Name(), 10, 32); err == nil {
			open[n] = true
		}
	}
	free := uint64(0)
	for open[free] {
		free++
	}
	setLimit(free)

	victim := before.Replicas[0]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "the restart to fail for want of descriptors", func() bool {
		for _, line := range strings.Split(in.stderr.String(), "\n") {
			if strings.Contains(line, "replica could not be started; retrying") && strings.Contains(line, "too many open files") {
				return true
			}
		}
		return false
	})
	setLimit(1024)

	var after = in.waitReady(2)
	r := after.Replicas[0]
	if r.Pid == victim.Pid || r.Restarts != 1 || r.LastRestart != "crash: signal killed" || r.Error != "" {
		t.Errorf("the killed replica after the descriptors were freed: %+v", r)
	}
	if other := after.Replicas[1]; other.Pid != before.Replicas[1].Pid || other.Restarts != 0 {
		t.Errorf("the other replica was restarted: %+v", other)
	}
	if strings.Contains(in.stderr.String(), "replica failed its liveness checks") {
		t.Error("liveness checks that could not open a socket counted against a replica")
	}
	if _, err := get(in.url("/")); err != nil {
		t.Errorf("a request after recovery: %v", err)
	}
	for _, line := range strings.Split(in.stderr.String(), "\n") {
		if strings.Contains(line, "replica-1") && !strings.Contains(line, "Accept error") {
			t.Log(line)
		}
	}
}
