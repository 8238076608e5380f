//go:build unix

package supervisor

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestLivenessCountsFailuresInARow(t *testing.T) {
	fail := errors.New("timeout")
	for _, after := range []int{1, 3} {
		var lv liveness
		for i := 1; i < after; i++ {
			if c := lv.record(fail, after); c != livenessSame || lv.unhealthy {
				t.Fatalf("after=%d: failure %d made it unhealthy", after, i)
			}
		}
		if c := lv.record(fail, after); c != becameUnhealthy {
			t.Fatalf("after=%d: failure %d did not make it unhealthy", after, after)
		}
		if c := lv.record(fail, after); c != livenessSame || !lv.unhealthy {
			t.Fatalf("after=%d: a further failure changed it", after)
		}
		if c := lv.record(nil, after); c != becameHealthy || lv.unhealthy || lv.failures != 0 {
			t.Fatalf("after=%d: one success did not bring it back", after)
		}
		// A success in between starts the count again.
		for i := 1; i < after; i++ {
			lv.record(fail, after)
		}
		lv.record(nil, after)
		if c := lv.record(fail, after); after > 1 && c != livenessSame {
			t.Fatalf("after=%d: failures across a success were added up", after)
		}
	}
}

func TestLivenessOptions(t *testing.T) {
	ok := HealthOptions{HealthInterval: time.Second, HealthTimeout: time.Second, UnhealthyAfter: 1}
	if err := ok.checkLiveness(); err != nil {
		t.Fatal(err)
	}
	if err := (HealthOptions{}).checkLiveness(); err != nil {
		t.Fatalf("liveness off: %v", err)
	}
	tests := []struct {
		set  func(*HealthOptions)
		want string
	}{
		{func(o *HealthOptions) { o.HealthInterval = -time.Second }, "--health-interval must not be negative"},
		{func(o *HealthOptions) { o.HealthTimeout = -time.Second }, "--health-timeout must not be negative"},
		{func(o *HealthOptions) { o.UnhealthyAfter = -1 }, "--unhealthy-after must not be negative"},
		{func(o *HealthOptions) { o.RestartUnhealthyAfter = -time.Second }, "--restart-unhealthy-after must not be negative"},
		{func(o *HealthOptions) { o.HealthTimeout = 0 }, "--health-timeout must be positive"},
		{func(o *HealthOptions) { o.UnhealthyAfter = 0 }, "--unhealthy-after must be at least 1"},
	}
	for _, tt := range tests {
		o := ok
		tt.set(&o)
		if err := o.checkLiveness(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", o, err, tt.want)
		}
	}
}

// fastLiveness checks every 50ms with a 200ms timeout; 2 failures make a
// replica unhealthy.
func fastLiveness(restartAfter time.Duration) func(*Options) {
	return func(o *Options) {
		o.HealthInterval, o.HealthTimeout, o.UnhealthyAfter, o.RestartUnhealthyAfter = 50*time.Millisecond, 200*time.Millisecond, 2, restartAfter
	}
}

func stopProcess(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The slot kills it, or the test's clean-up does; a stopped process
	// must not outlive a failed test.
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); _ = syscall.Kill(pid, syscall.SIGCONT) })
}

// TestSlotUnhealthyIsRestarted: a replica that stops answering (SIGSTOP)
// leaves rotation, shows why, and is killed and restarted.
func TestSlotUnhealthyIsRestarted(t *testing.T) {
	sl := testSlotWith(t, fastLiveness(time.Second), "/health", 10*time.Second, CrashBackoff{Initial: 10 * time.Millisecond}, "serve")
	first := waitState(t, sl, control.Ready, 10*time.Second)
	stopProcess(t, first.Pid)
	st := waitState(t, sl, control.Unhealthy, 5*time.Second)
	if st.Pid != first.Pid || !strings.Contains(st.HealthError, "/health") {
		t.Fatalf("unhealthy: %+v", st)
	}
	if rd := sl.sup.Readiness(); rd.Ready != 0 {
		t.Fatalf("an unhealthy replica counts as ready: %+v", rd)
	}
	testutil.WaitFor(t, 10*time.Second, "the unhealthy replica to be restarted", func() bool {
		st = sl.status()
		return st.State == control.Ready && st.Pid != first.Pid
	})
	if st.LastRestart != ReasonUnhealthy || st.Restarts != 1 || st.HealthError != "" || st.LastExit != "signal killed" {
		t.Fatalf("after the restart: %+v", st)
	}
	waitGone(t, 5*time.Second, first.Pid)
}

// TestSlotUnhealthyRecovers: one passing check brings it back, same process.
func TestSlotUnhealthyRecovers(t *testing.T) {
	sl := testSlotWith(t, fastLiveness(time.Hour), "/health", 10*time.Second, CrashBackoff{}, "serve")
	first := waitState(t, sl, control.Ready, 10*time.Second)
	stopProcess(t, first.Pid)
	waitState(t, sl, control.Unhealthy, 5*time.Second)
	// Out of rotation: with no other replica, a request gets 503 at once
	// rather than hang on the stopped process.
	srv := httptest.NewServer(sl.sup.bal)
	defer srv.Close()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(srv.URL + "/health")
	if err != nil {
		t.Fatalf("a request while the only replica is unhealthy: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a request while the only replica is unhealthy: %s, want 503", resp.Status)
	}
	if err := syscall.Kill(first.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, sl, control.Ready, 5*time.Second)
	if st.Pid != first.Pid || st.Restarts != 0 || st.HealthError != "" {
		t.Fatalf("after recovering: %+v", st)
	}
	if rd := sl.sup.Readiness(); rd.Ready != 1 {
		t.Fatalf("back, but not in rotation: %+v", rd)
	}
}

// TestHungReplicaRequestsGoElsewhere: the requests a hung replica held get
// no answer from it; when it is killed they are sent to the other replica,
// and every client gets 200.
func TestHungReplicaRequestsGoElsewhere(t *testing.T) {
	s := startTestSupervisor(t, 2, func(o *Options) {
		o.Health = "/health"
		o.Retries = 2
		o.MaxInflight = 8 // two in flight on each at once, from the start: a learned cap starts at 1
		fastLiveness(500 * time.Millisecond)(o)
	}, "serve")
	srv := httptest.NewServer(s.bal)
	defer srv.Close()
	const n = 4
	type answer struct {
		code int
		body string
		err  error
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			resp, err := http.Get(srv.URL + "/sleep?d=2s")
			if err != nil {
				answers <- answer{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{code: resp.StatusCode, body: string(b)}
		}()
	}
	var st control.Status
	testutil.WaitFor(t, 5*time.Second, "two requests in flight on each replica", func() bool {
		st = s.Status()
		return st.Replicas[0].Inflight == 2 && st.Replicas[1].Inflight == 2
	})
	hung, other := st.Replicas[0].Pid, st.Replicas[1].Pid
	stopProcess(t, hung)
	byPid := map[string]int{}
	for range n {
		a := <-answers
		if a.err != nil || a.code != http.StatusOK {
			t.Fatalf("a request failed: %+v", a)
		}
		byPid[a.body]++
	}
	if byPid[strconv.Itoa(other)] != n {
		t.Errorf("answers by pid %v, want all %d from the other replica %d", byPid, n, other)
	}
	if got := s.bal.Stats().Retried; got != 2 {
		t.Errorf("retried %d, want the hung replica's 2", got)
	}
	if r := s.Status().Replicas[0]; r.LastRestart != ReasonUnhealthy {
		t.Errorf("hung replica: %+v", r)
	}
}

// TestSlowRequestWarning: a request in flight for over 10 times the
// replica's p99 (and over a second) is logged, once a minute at most.
func TestSlowRequestWarning(t *testing.T) {
	var logs testutil.SyncBuffer
	s := startTestSupervisor(t, 1, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	}, "serve")
	srv := httptest.NewServer(s.bal)
	defer srv.Close()
	for range 20 { // the balancer needs 20 responses for a p99
		resp, err := http.Get(srv.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/hang", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if resp, err := http.DefaultClient.Do(req.WithContext(ctx)); err == nil {
			resp.Body.Close()
		}
	}()
	const warning = "a request has been in flight for over 10 times the replica's p99"
	testutil.WaitFor(t, 10*time.Second, "the slow-request warning", func() bool {
		return strings.Contains(logs.String(), warning)
	})
	// The warning came at the first check after a second; two more checks
	// pass with the request still hung: no second warning.
	testutil.WaitFor(t, 15*time.Second, "the hung request to age past two more checks", func() bool {
		return s.Status().Replicas[0].OldestInflightMs > (slowFloor + 3*recycleInterval).Milliseconds()
	})
	if n := strings.Count(logs.String(), warning); n != 1 {
		t.Fatalf("%d warnings in under a minute, want 1:\n%s", n, logs.String())
	}
}
