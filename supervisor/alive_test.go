package supervisor

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
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

// TestBusyReplicaStaysLive: a replica whose health endpoint fails while it
// answers requests is busy, not hung: it stays in rotation and alive to
// the balancer. Once it stops answering requests, the failed checks count
// and it leaves rotation as unhealthy.
func TestBusyReplicaStaysLive(t *testing.T) {
	sick := filepath.Join(t.TempDir(), "sick")
	// A check every 200 ms rather than fastLiveness's 50, from 4 clients:
	// a check counts as failed if no request was answered since the one
	// before, and on a busy machine one client's requests may come 50 ms
	// apart.
	live := func(o *Options) {
		fastLiveness(time.Hour)(o)
		o.HealthInterval = 200 * time.Millisecond
	}
	sl := testSlotWith(t, live, "/health", 10*time.Second, CrashBackoff{}, "sick-health", sick)
	waitState(t, sl, control.Ready, 10*time.Second)
	srv := httptest.NewServer(sl.sup.bal)
	defer srv.Close()
	stop := make(chan struct{})
	var load sync.WaitGroup
	for range 4 {
		load.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if resp, err := http.Get(srv.URL + "/sleep?d=5ms"); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	if err := os.WriteFile(sick, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sl.mu.Lock()
	be := sl.cur.be
	sl.mu.Unlock()
	// 2 s is 10 checks, at 2 failures to become unhealthy.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if st := sl.status(); st.State != control.Ready || !be.Alive() {
			close(stop)
			t.Fatalf("a replica answering requests left rotation or was not alive: %+v", st)
		}
	}
	close(stop)
	load.Wait()
	waitState(t, sl, control.Unhealthy, 5*time.Second)
}
