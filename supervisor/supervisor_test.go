//go:build unix

package supervisor

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// startTestSupervisor is newTestSupervisor with its replicas started and
// ready.
func startTestSupervisor(t *testing.T, replicas int, set func(*Options), mode ...string) *Supervisor {
	t.Helper()
	s := newTestSupervisor(t, func(o *Options) {
		o.Replicas = replicas
		set(o)
	}, mode...)
	if err := s.waitInitial(s.startInitial()); err != nil {
		t.Fatal(err)
	}
	return s
}

// pids returns the pids of the replicas that run a process.
func pids(st control.Status) []int {
	var ps []int
	for _, r := range st.Replicas {
		if r.Pid != 0 {
			ps = append(ps, r.Pid)
		}
	}
	return ps
}

// waitGone waits until none of pids is alive (zombies count as gone).
func waitGone(t *testing.T, timeout time.Duration, pids ...int) {
	t.Helper()
	testutil.WaitFor(t, timeout, "replica processes to exit", func() bool {
		for _, p := range pids {
			if syscall.Kill(p, 0) == nil && !zombie(p) {
				return false
			}
		}
		return true
	})
}

func TestScaleUpAndDown(t *testing.T) {
	s := startTestSupervisor(t, 1, func(o *Options) { o.Health = "/health" }, "serve")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Scale(ctx, 3)
	if err != nil || res.From != 1 || res.To != 3 || len(res.Started) != 2 || len(res.Errors) != 0 {
		t.Fatalf("scale 1 -> 3: %+v, %v", res, err)
	}
	st := s.Status()
	if st.Desired != 3 || st.Ready() != 3 || len(st.Replicas) != 3 {
		t.Fatalf("after scale-up: %+v", st)
	}
	if rd := s.Readiness(); rd.Ready != 3 || rd.Stopping {
		t.Errorf("readiness after scale-up: %+v", rd)
	}
	removed := pids(control.Status{Replicas: st.Replicas[1:]})
	res, err = s.Scale(ctx, 1)
	if err != nil || len(res.Stopped) != 2 || res.Stopped[0].Name != "replica-3" || res.Stopped[1].State != control.Stopped {
		t.Fatalf("scale 3 -> 1: %+v, %v", res, err)
	}
	waitGone(t, 5*time.Second, removed...)
	testutil.WaitFor(t, 5*time.Second, "removed replicas to leave status", func() bool { return len(s.Status().Replicas) == 1 })
	if res, err := s.Scale(ctx, 1); err != nil || len(res.Started)+len(res.Stopped) != 0 {
		t.Errorf("scale to the same count: %+v, %v", res, err)
	}
	if _, err := s.Scale(ctx, -1); err == nil || !strings.Contains(err.Error(), "must be at least 1") {
		t.Errorf("scale -1: %v", err)
	}
}

func TestScaleUpFailureIsReported(t *testing.T) {
	marker := t.TempDir() + "/started"
	s := startTestSupervisor(t, 1, func(*Options) {}, "serve-once", marker)
	res, err := s.Scale(context.Background(), 2)
	if err != nil || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "replica-2") || !strings.Contains(res.Errors[0], "exit code 1") {
		t.Fatalf("scale with a replica that cannot start: %+v, %v", res, err)
	}
}

func TestScaleAfterStop(t *testing.T) {
	s := startTestSupervisor(t, 1, func(*Options) {}, "serve")
	s.stop(nil)
	if _, err := s.Scale(context.Background(), 2); !errors.Is(err, errStopping) {
		t.Fatalf("scale after stop: %v, want %v", err, errStopping)
	}
	if _, err := s.RollingRestart(context.Background()); !errors.Is(err, errStopping) {
		t.Fatalf("rolling restart after stop: %v, want %v", err, errStopping)
	}
	if rd := s.Readiness(); !rd.Stopping || rd.OK() {
		t.Errorf("readiness after stop: %+v", rd)
	}
}

// TestScaleRacingStop: a stop that runs to its end after a Scale call has
// been admitted must not leave the replicas that Scale starts running.
// Before the fix, Scale checked for a stop before it took s.mu, and this
// test found replica-2 running after stop had returned.
func TestScaleRacingStop(t *testing.T) {
	s := startTestSupervisor(t, 1, func(*Options) {}, "serve")
	stopped := make(chan struct{})
	s.testHookScale = func() {
		go func() {
			s.stop(nil)
			close(stopped)
		}()
		select {
		case <-stopped: // the stop ran to its end in the gap
		case <-time.After(10 * time.Second):
		}
	}
	res, err := s.Scale(context.Background(), 2)
	<-stopped
	if !errors.Is(err, errStopping) {
		t.Errorf("scale racing a stop: %+v, %v; want %v", res, err, errStopping)
	}
	for _, r := range s.Status().Replicas {
		if r.Pid != 0 {
			t.Errorf("%s still runs (pid %d) after the stop returned", r.Name, r.Pid)
			_ = syscall.Kill(-r.Pid, syscall.SIGKILL)
		}
	}
}

// TestScaleDownAbandonedThenUp: a scale-down whose caller gave up leaves
// its replica draining; a scale-up after it must neither hide that replica
// from status nor let stop return before it has exited. Before the fix the
// new slot overwrote the old one and stop returned with it still running.
func TestScaleDownAbandonedThenUp(t *testing.T) {
	// Only the first replica-2 is slow to stop, so that a stop that waits
	// for the new replica-2 alone returns while the old one still runs.
	s := startTestSupervisor(t, 2, func(*Options) {}, "slow-stop-replica", "2", t.TempDir()+"/first", "2s")
	old := s.Status().Replicas[1]
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := s.Scale(ctx, 1)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "goes on in the background") {
		t.Fatalf("abandoned scale-down: %v", err)
	}
	if _, err := s.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	var draining, fresh bool
	for _, r := range st.Replicas {
		if r.ID == 2 && r.Pid == old.Pid {
			draining = true
		} else if r.ID == 2 && r.State == control.Ready {
			fresh = true
		}
	}
	if !draining || !fresh {
		t.Fatalf("status after an abandoned scale-down and a scale-up should show both replica-2s: %+v", st.Replicas)
	}
	s.stop(nil)
	if syscall.Kill(old.Pid, 0) == nil && !zombie(old.Pid) {
		t.Fatalf("stop returned while the scaled-down replica-2 (pid %d) still ran", old.Pid)
	}
}

// TestStopDuringReplace: a stop that comes while a replaced process drains
// keeps its own deadline. Before the fix the replace's drain ran to the
// full --stop-timeout (30 s here) with a request hung on the old process.
func TestStopDuringReplace(t *testing.T) {
	sl, first := replacingWithAHungRequest(t)
	begin := time.Now()
	sl.requestStop(errors.New("test"), time.Now().Add(300*time.Millisecond))
	select {
	case <-sl.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the slot still stopping %s after a stop with 300ms of grace", time.Since(begin))
	}
	waitGone(t, 5*time.Second, first.Pid)
}

// TestForceStop: a second Ctrl-C during a graceful stop kills replicas that
// ignore SIGTERM at once, instead of after the stop timeout.
func TestForceStop(t *testing.T) {
	s := startTestSupervisor(t, 2, func(o *Options) { o.StopTimeout = time.Minute }, "ignore-term")
	running := pids(s.Status())
	done := make(chan struct{})
	go func() {
		s.stop(nil)
		close(done)
	}()
	testutil.WaitFor(t, 5*time.Second, "the stop to reach the replicas", func() bool {
		for _, sl := range s.snapshot() {
			if !sl.stopping() {
				return false
			}
		}
		return true
	})
	select {
	case <-done:
		t.Fatal("replicas that ignore SIGTERM stopped before their grace ran out")
	case <-time.After(200 * time.Millisecond):
	}
	begin := time.Now()
	s.forceStop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a forced stop is still waiting after 5s")
	}
	t.Logf("forced stop took %s", time.Since(begin))
	waitGone(t, 5*time.Second, running...)
}

func TestRollingRestart(t *testing.T) {
	s := startTestSupervisor(t, 2, func(o *Options) { o.Health = "/health" }, "serve")
	before := s.Status()
	var wg sync.WaitGroup
	var second error
	res, err := func() (control.RestartResult, error) {
		// A second restart while one runs is refused, not queued.
		s.restartMu.Lock()
		wg.Add(1)
		go func() { defer wg.Done(); _, second = s.RollingRestart(context.Background()) }()
		wg.Wait()
		s.restartMu.Unlock()
		return s.RollingRestart(context.Background())
	}()
	if !errors.Is(second, errRestartRunning) {
		t.Errorf("restart during a restart: %v", second)
	}
	if err != nil || res.Error != "" || len(res.Replaced) != 2 {
		t.Fatalf("rolling restart: %+v, %v", res, err)
	}
	after := s.Status()
	for i, r := range after.Replicas {
		if r.State != control.Ready || r.Pid == before.Replicas[i].Pid || r.LastRestart != ReasonRolling || r.Restarts != 1 {
			t.Errorf("after the restart: %+v (before %+v)", r, before.Replicas[i])
		}
	}
	waitGone(t, 5*time.Second, pids(before)...)
}

func TestRollingRestartSkipsAndStops(t *testing.T) {
	marker := t.TempDir() + "/started"
	s := startTestSupervisor(t, 1, func(*Options) {}, "serve-once", marker)
	res, err := s.RollingRestart(context.Background())
	if err != nil || len(res.Replaced) != 0 || !strings.Contains(res.Error, "the old process serves on") {
		t.Fatalf("rolling restart with a successor that cannot start: %+v, %v", res, err)
	}
	if st := s.Status(); st.Ready() != 1 {
		t.Fatalf("the old process should serve on: %+v", st)
	}
}

// TestStopDuringReplaceGivesTheSuccessorItsGrace: a stop that comes while
// a replaced process drains a hung request stops the successor, which
// serves the new traffic, gracefully (SIGTERM, exit 0) and at the same
// time, not after the old one has used up the grace.
func TestStopDuringReplaceGivesTheSuccessorItsGrace(t *testing.T) {
	sl, first := replacingWithAHungRequest(t)
	successor := sl.status().Pid
	sl.requestStop(errors.New("test"), time.Now().Add(3*time.Second))
	// The successor is idle: it must be gone well before the old process's
	// hung request runs out the 3 s of grace.
	waitGone(t, 2*time.Second, successor)
	<-sl.done
	if st := sl.status(); st.LastExit != "exit code 0" || st.State != control.Stopped {
		t.Fatalf("the successor (which exits 0 on SIGTERM) ended with %q, state %s", st.LastExit, st.State)
	}
	waitGone(t, 5*time.Second, first.Pid)
}

// TestBootFailsAtTheFirstFailure: when any initial replica exits before it
// is ready, startup fails at once and names it, rather than waiting for a
// lower-numbered replica's ready timeout and blaming that one.
func TestBootFailsAtTheFirstFailure(t *testing.T) {
	s := newTestSupervisor(t, func(o *Options) { o.Replicas = 3; o.ReadyTimeout = time.Minute }, "fail-replica", "3")
	begin := time.Now()
	err := s.waitInitial(s.startInitial())
	if err == nil || !strings.Contains(err.Error(), "replica-3") || !strings.Contains(err.Error(), "exit code 1") {
		t.Fatalf("boot with replica-3 exiting: %v", err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Fatalf("the failure of replica-3 was reported after %s", took)
	}
}

// replacingWithAHungRequest starts one replica with a 30 s stop timeout,
// hangs a request on it, and has it replaced: it returns once the
// successor serves and the old process (first) drains the hung request.
func replacingWithAHungRequest(t *testing.T) (*slot, control.ReplicaStatus) {
	t.Helper()
	s := startTestSupervisor(t, 1, func(o *Options) { o.StopTimeout = 30 * time.Second }, "serve")
	srv := httptest.NewServer(s.bal)
	t.Cleanup(srv.Close)
	sl := s.active()[0]
	first := sl.status()
	go func() {
		if resp, err := http.Get(srv.URL + "/hang"); err == nil {
			resp.Body.Close()
		}
	}()
	testutil.WaitFor(t, 5*time.Second, "the hung request in flight", func() bool { return sl.status().Inflight == 1 })
	go func() { _ = sl.requestReplace(context.Background(), ReasonRolling) }()
	testutil.WaitFor(t, 10*time.Second, "the successor to take over", func() bool {
		st := sl.status()
		return st.Pid != 0 && st.Pid != first.Pid
	})
	return sl, first
}
