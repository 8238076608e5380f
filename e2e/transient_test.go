package e2e

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestReplicaRestartsAfterFdExhaustion is a transient start error:
// mattingctl runs out of file descriptors (idle control connections under
// `ulimit -n 160`), a replica is killed, and its restart fails with "too
// many open files". Once the connections close, the replica comes back
// ready, not failed; the other replica's liveness checks, which could not
// open a socket meanwhile, do not count against it.
func TestReplicaRestartsAfterFdExhaustion(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	port := testutil.FreePorts(t, 2+8)
	in := launch(t, "/bin/sh", home, port, "-c", `ulimit -n 160 && exec "$0" "$@"`, mattingctl,
		"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--replicas", "2",
		"--max-inflight", "1", "--health-interval", "250ms", "--unhealthy-after", "2", "--", fakemodel)
	before := in.waitReady(2)

	// --max-conns keeps client connections from taking the last
	// descriptors, so the test takes them through the control socket,
	// which a user's own commands may open without a cap: idle
	// connections, more than the limit, until mattingctl has none left.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 200 {
		c, err := net.Dial("unix", filepath.Join(home, "default.sock"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	testutil.WaitFor(t, 10*time.Second, "mattingctl to run out of file descriptors", func() bool {
		return strings.Contains(in.stderr.String(), "too many open files")
	})

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
	for _, c := range conns {
		c.Close()
	}
	conns = nil

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
