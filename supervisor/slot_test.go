//go:build unix

package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/replica"
)

// TestHelperProcess is not a test: it is the replica the slot tests start.
// Modes: serve (until SIGTERM), exit CODE, serve-for DURATION (then exit 3),
// unhealthy (listens, /health answers 503).
func TestHelperProcess(t *testing.T) {
	if os.Getenv("MATTINGCTL_TEST_HELPER") != "1" {
		return
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	args = args[1:]
	switch args[0] {
	case "exit":
		code, _ := strconv.Atoi(args[1])
		os.Exit(code)
	case "serve-with-child":
		// Forks a child into its process group, as a server forking
		// workers does, and writes the child's pid to args[1].
		child := exec.Command(os.Args[0], "-test.run=TestHelperProcess", "--", "serve-for", "1h")
		child.Env = append(os.Environ(), "PORT=0")
		if err := child.Start(); err != nil {
			os.Exit(2)
		}
		_ = os.WriteFile(args[1], []byte(strconv.Itoa(child.Process.Pid)), 0o600)
		args = []string{"serve"}
	case "serve-once":
		// The first process serves; any later one fails to start.
		if _, err := os.Stat(args[1]); err == nil {
			fmt.Fprintln(os.Stderr, "cannot load model")
			os.Exit(1)
		}
		_ = os.WriteFile(args[1], nil, 0o600)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if args[0] == "unhealthy" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	go func() { _ = http.Serve(ln, mux) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	var after <-chan time.Time
	if args[0] == "serve-for" {
		d, _ := time.ParseDuration(args[1])
		after = time.After(d)
	}
	select {
	case <-sigs:
		os.Exit(0)
	case <-after:
		os.Exit(3)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// testSlot returns a slot running this test binary as a helper replica.
func testSlot(t *testing.T, health string, ready time.Duration, restart RestartPolicy, mode ...string) *slot {
	return testSlotWith(t, func(*Options) {}, health, ready, restart, mode...)
}

// testSlotWith is testSlot with options adjusted by set before it starts.
func testSlotWith(t *testing.T, set func(*Options), health string, ready time.Duration, restart RestartPolicy, mode ...string) *slot {
	t.Helper()
	s := &Supervisor{
		opts: Options{
			Command:      append([]string{os.Args[0], "-test.run=TestHelperProcess", "--"}, mode...),
			Env:          []string{"MATTINGCTL_TEST_HELPER=1"},
			BasePort:     freePort(t),
			Health:       health,
			ReadyTimeout: ready,
			Restart:      restart,
		},
		log:   hclog.NewNullLogger(),
		out:   &replica.Output{Stdout: io.Discard, Stderr: io.Discard},
		bal:   balancer.New(balancer.Options{}),
		slots: map[int]*slot{},
		ports: map[int]*slot{},
		usage: replica.NewSampler(time.Second),
	}
	s.opts.StopTimeout = 5 * time.Second
	set(&s.opts)
	s.desired = 1
	sl := newSlot(s, 1, "")
	s.slots[1] = sl
	go sl.run()
	t.Cleanup(func() {
		sl.requestStop(time.Now().Add(5 * time.Second))
		<-sl.done
	})
	return sl
}

func waitState(t *testing.T, sl *slot, want State, timeout time.Duration) ReplicaStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := sl.status()
		if st.State == string(want) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica state %q after %s, want %q (status %+v)", st.State, timeout, want, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSlotTransitions(t *testing.T) {
	fast := RestartPolicy{Initial: 10 * time.Millisecond, MaxRestarts: 2}
	tests := []struct {
		name     string
		health   string
		ready    time.Duration
		mode     []string
		want     State  // final state reached without a stop
		errLike  string // in the failure, for Failed
		restarts int
	}{
		{"boot failure is not retried", "", 5 * time.Second, []string{"exit", "1"}, Failed, "exited before becoming ready (exit code 1)", 0},
		{"never healthy fails at the ready timeout", "/health", 300 * time.Millisecond, []string{"unhealthy"}, Failed, "did not become ready within 300ms", 0},
		{"repeated crashes after ready end failed", "", 5 * time.Second, []string{"serve-for", "150ms"}, Failed, "crashed 3 times in a row (last: exit code 3)", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sl := testSlot(t, tt.health, tt.ready, fast, tt.mode...)
			st := waitState(t, sl, tt.want, 20*time.Second)
			if !strings.Contains(st.Error, tt.errLike) {
				t.Errorf("error = %q, want it to contain %q", st.Error, tt.errLike)
			}
			if st.Restarts != tt.restarts {
				t.Errorf("restarts = %d, want %d", st.Restarts, tt.restarts)
			}
			if st.Pid != 0 {
				t.Errorf("a failed replica shows pid %d", st.Pid)
			}
		})
	}
}

func TestSlotReadyThenStop(t *testing.T) {
	sl := testSlot(t, "/health", 10*time.Second, RestartPolicy{}, "serve")
	st := waitState(t, sl, Ready, 10*time.Second)
	if st.Pid == 0 || st.StartedAt == nil {
		t.Fatalf("ready replica status %+v", st)
	}
	select {
	case <-sl.firstDone:
	default:
		t.Fatal("firstDone not closed once ready")
	}
	sl.requestStop(time.Now().Add(5 * time.Second))
	<-sl.done
	st = sl.status()
	// The helper exits 0 on SIGTERM: a requested, graceful stop.
	if st.State != string(Stopped) || st.LastExit != "exit code 0" || st.Restarts != 0 || st.Error != "" {
		t.Fatalf("after stop: %+v", st)
	}
}

func TestSlotRestartsAfterCrash(t *testing.T) {
	sl := testSlot(t, "", 10*time.Second, RestartPolicy{Initial: 10 * time.Millisecond}, "serve")
	first := waitState(t, sl, Ready, 10*time.Second)
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := sl.status()
		if st.State == string(Ready) && st.Pid != first.Pid {
			if st.Restarts != 1 || st.LastExit != "signal killed" || st.Port != first.Port {
				t.Fatalf("after restart: %+v", st)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSlotReplace(t *testing.T) {
	sl := testSlot(t, "/health", 10*time.Second, RestartPolicy{}, "serve")
	first := waitState(t, sl, Ready, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sl.requestReplace(ctx, ReasonRolling); err != nil {
		t.Fatal(err)
	}
	second := sl.status()
	if second.State != string(Ready) || second.Pid == first.Pid || second.Port == first.Port ||
		second.LastRestart != ReasonRolling || second.Restarts != 1 {
		t.Fatalf("after a replace: %+v (before %+v)", second, first)
	}
	if syscall.Kill(first.Pid, 0) == nil {
		// It may linger as a zombie for a moment before Wait reaps it.
		deadline := time.Now().Add(5 * time.Second)
		for syscall.Kill(first.Pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The next replace goes back to the home port, now free.
	if err := sl.requestReplace(ctx, ReasonMemory); err != nil {
		t.Fatal(err)
	}
	third := sl.status()
	if third.Port != first.Port || third.Pid == second.Pid || third.LastRestart != ReasonMemory || third.Restarts != 2 {
		t.Fatalf("after a second replace: %+v", third)
	}
}

func TestSlotReplaceFailureKeepsOld(t *testing.T) {
	marker := t.TempDir() + "/started"
	sl := testSlot(t, "", 10*time.Second, RestartPolicy{}, "serve-once", marker)
	first := waitState(t, sl, Ready, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := sl.requestReplace(ctx, ReasonRolling)
	if err == nil || !strings.Contains(err.Error(), "exited before becoming ready (exit code 1); the old process serves on") {
		t.Fatalf("replace with a failing successor: %v", err)
	}
	st := sl.status()
	if st.State != string(Ready) || st.Pid != first.Pid || st.Port != first.Port || st.Restarts != 0 {
		t.Fatalf("after a failed replace: %+v, want the first process serving", st)
	}
}

func TestSlotRecyclesAfterMaxRequests(t *testing.T) {
	sl := testSlotWith(t, func(o *Options) { o.MaxRequests = 3 }, "", 10*time.Second, RestartPolicy{}, "serve")
	first := waitState(t, sl, Ready, 10*time.Second)
	srv := httptest.NewServer(sl.sup.bal)
	defer srv.Close()
	for range 3 {
		resp, err := http.Get(srv.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := sl.status()
		if st.Pid != first.Pid && st.State == string(Ready) {
			if st.LastRestart != ReasonMaxReq || st.Requests != 3 {
				t.Fatalf("after recycling: %+v", st)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recycled after 3 requests with a limit of 3: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSlotRecyclesOverMaxMemory(t *testing.T) {
	sl := testSlotWith(t, func(o *Options) { o.MaxMemory = 1 << 20 }, "", 10*time.Second, RestartPolicy{}, "serve")
	first := waitState(t, sl, Ready, 10*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := sl.status()
		if st.Pid != first.Pid && st.State == string(Ready) {
			if st.LastRestart != ReasonMemory {
				t.Fatalf("replaced for %q, want memory", st.LastRestart)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a replica over --max-memory 1MiB was not replaced: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashKillsTheGroup: when a replica crashes, what it forked is killed
// before it is restarted.
func TestCrashKillsTheGroup(t *testing.T) {
	pidFile := t.TempDir() + "/child"
	sl := testSlot(t, "", 10*time.Second, RestartPolicy{Initial: 10 * time.Millisecond}, "serve-with-child", pidFile)
	first := waitState(t, sl, Ready, 10*time.Second)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(b))
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st := sl.status(); st.State == string(Ready) && st.Pid != first.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not restarted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for syscall.Kill(child, 0) == nil && !zombie(child) {
		if time.Now().After(deadline) {
			t.Fatalf("the crashed replica's child %d outlived it", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// zombie reports whether pid has exited but not been reaped (its parent
// died; PID 1 in a container may never reap it).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
