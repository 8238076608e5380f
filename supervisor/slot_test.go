//go:build unix

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// The helpers (and theirs) exit once this test binary has, killed or not.
func init() { testutil.MarkTestBinary() }

// TestHelperProcess is not a test: it is the replica the slot tests start.
// Modes: serve (until SIGTERM), exit CODE, serve-for DURATION (then exit 3),
// crash-after-ready DURATION (exit 3 that long after its first connection),
// unhealthy (listens, /health answers 503), serve-with-child FILE,
// serve-once FILE, slow-start DURATION (sleeps before it listens),
// slow-stop DURATION (exits that long after SIGTERM), ignore-term (only
// SIGKILL ends it), slow-stop-replica ID FILE DURATION (slow-stop for
// replica ID's first process only), fail-first FILE (the first process
// exits 1 before it listens, later ones serve), sick-health FILE (/health
// answers 503 while FILE exists). Every mode that serves
// answers /hang never, /fail with 500 and /sleep?d=DURATION with its pid
// after d.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("MATTINGCTL_TEST_HELPER") != "1" {
		return
	}
	// Its children too (serve-with-child's) are helpers.
	testutil.ExitWithTestBinary()
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
	case "slow-start":
		d, _ := time.ParseDuration(args[1])
		time.Sleep(d)
	case "slow-stop-replica":
		// Replica args[1]'s first process stops slowly, args[3] after
		// SIGTERM; every other process stops at once.
		first := false
		if os.Getenv("MATTINGCTL_REPLICA") == args[1] {
			f, err := os.OpenFile(args[2], os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			first = err == nil
			if first {
				f.Close()
			}
		}
		if first {
			args = []string{"slow-stop", args[3]}
		} else {
			args = []string{"serve"}
		}
	case "fail-replica":
		// Replica args[1] exits 1 at once; the others never listen.
		if os.Getenv("MATTINGCTL_REPLICA") == args[1] {
			fmt.Fprintln(os.Stderr, "cannot load model")
			os.Exit(1)
		}
		time.Sleep(time.Hour)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	case "fail-first":
		if _, err := os.Stat(args[1]); err != nil {
			_ = os.WriteFile(args[1], nil, 0o600)
			fmt.Fprintln(os.Stderr, "cannot load model, this once")
			os.Exit(1)
		}
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
		if args[0] == "sick-health" {
			if _, err := os.Stat(args[1]); err == nil {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { select {} })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no model", http.StatusInternalServerError)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
		fmt.Fprint(w, os.Getpid())
	})
	var after <-chan time.Time
	switch args[0] {
	case "serve-for":
		d, _ := time.ParseDuration(args[1])
		after = time.After(d)
	case "crash-after-ready":
		// Counted from the first connection, the readiness check's: however
		// slowly a busy machine started this process, it was seen ready.
		d, _ := time.ParseDuration(args[1])
		first := &firstConn{Listener: ln, seen: make(chan struct{})}
		ln = first
		crash := make(chan time.Time, 1)
		go func() {
			<-first.seen
			crash <- <-time.After(d)
		}()
		after = crash
	}
	go func() { _ = http.Serve(ln, mux) }()
	sigs := make(chan os.Signal, 1)
	if args[0] != "ignore-term" { // Notify would undo the Ignore
		signal.Notify(sigs, syscall.SIGTERM)
	}
	select {
	case <-sigs:
		if args[0] == "slow-stop" {
			d, _ := time.ParseDuration(args[1])
			time.Sleep(d)
		}
		os.Exit(0)
	case <-after:
		os.Exit(3)
	}
}

// firstConn is a listener that closes seen when it accepts its first
// connection.
type firstConn struct {
	net.Listener
	seen chan struct{}
	once sync.Once
}

func (l *firstConn) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.once.Do(func() { close(l.seen) })
	}
	return c, err
}

// helperCommand runs this test binary as a replica in mode.
func helperCommand(mode ...string) []string {
	return append([]string{os.Args[0], "-test.run=TestHelperProcess", "--"}, mode...)
}

// newTestSupervisor returns a supervisor, through New as Run makes it, of
// replicas running this test binary in mode, with options adjusted by set.
// Its replicas are stopped when the test ends.
func newTestSupervisor(t *testing.T, set func(*Options), mode ...string) *Supervisor {
	t.Helper()
	opts := upDefaults(1)
	opts.Command = helperCommand(mode...)
	opts.Env = []string{"MATTINGCTL_TEST_HELPER=1"}
	opts.Port = testutil.FreePort(t)
	opts.BasePort = testutil.FreePorts(t, 12)
	opts.ReadyTimeout = 10 * time.Second
	opts.StopTimeout = 5 * time.Second
	opts.StateDir = t.TempDir()
	set(&opts)
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.forceStop()
		select {
		case <-s.stopped:
		default:
			s.stop(nil)
		}
	})
	return s
}

// testSlot returns a slot running this test binary as a helper replica.
func testSlot(t *testing.T, health string, ready time.Duration, backoff CrashBackoff, mode ...string) *slot {
	return testSlotWith(t, func(*Options) {}, health, ready, backoff, mode...)
}

// testSlotWith is testSlot with options adjusted by set before it starts.
func testSlotWith(t *testing.T, set func(*Options), health string, ready time.Duration, backoff CrashBackoff, mode ...string) *slot {
	t.Helper()
	s := newTestSupervisor(t, func(o *Options) {
		o.Health, o.ReadyTimeout, o.Backoff = health, ready, backoff
		set(o)
	}, mode...)
	s.mu.Lock()
	s.desired = 1
	sl := s.addSlotLocked(1, "")
	s.mu.Unlock()
	return sl
}

func waitState(t *testing.T, sl *slot, want control.State, timeout time.Duration) control.ReplicaStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := sl.status()
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica state %q after %s, want %q (status %+v)", st.State, timeout, want, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSlotTransitions(t *testing.T) {
	fast := CrashBackoff{Initial: 10 * time.Millisecond, MaxRestarts: 2}
	tests := []struct {
		name     string
		health   string
		ready    time.Duration
		mode     []string
		want     control.State // final state reached without a stop
		errLike  string        // in the failure, for Failed
		restarts int
	}{
		{"boot failure is not retried", "", 5 * time.Second, []string{"exit", "1"}, control.Failed, "exited before becoming ready (exit code 1)", 0},
		{"never healthy fails at the ready timeout", "/health", 2 * time.Second, []string{"unhealthy"}, control.Failed, "did not become ready within 2s; last check: GET /health -> 503", 0},
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
	sl := testSlot(t, "/health", 10*time.Second, CrashBackoff{}, "serve")
	st := waitState(t, sl, control.Ready, 10*time.Second)
	if st.Pid == 0 || st.StartedAt == nil {
		t.Fatalf("ready replica status %+v", st)
	}
	select {
	case <-sl.firstDone:
	default:
		t.Fatal("firstDone not closed once ready")
	}
	sl.requestStop(errors.New("test"), time.Now().Add(5*time.Second))
	<-sl.done
	st = sl.status()
	// The helper exits 0 on SIGTERM: a requested, graceful stop.
	if st.State != control.Stopped || st.LastExit != "exit code 0" || st.Restarts != 0 || st.Error != "" {
		t.Fatalf("after stop: %+v", st)
	}
}

func TestSlotRestartsAfterCrash(t *testing.T) {
	sl := testSlot(t, "", 10*time.Second, CrashBackoff{Initial: 10 * time.Millisecond}, "serve")
	first := waitState(t, sl, control.Ready, 10*time.Second)
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := sl.status()
		if st.State == control.Ready && st.Pid != first.Pid {
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
	sl := testSlot(t, "/health", 10*time.Second, CrashBackoff{}, "serve")
	first := waitState(t, sl, control.Ready, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sl.requestReplace(ctx, ReasonRolling); err != nil {
		t.Fatal(err)
	}
	second := sl.status()
	if second.State != control.Ready || second.Pid == first.Pid || second.Port == first.Port ||
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
	sl := testSlot(t, "", 10*time.Second, CrashBackoff{}, "serve-once", marker)
	first := waitState(t, sl, control.Ready, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := sl.requestReplace(ctx, ReasonRolling)
	if err == nil || !strings.Contains(err.Error(), "exited before becoming ready (exit code 1); the old process serves on") {
		t.Fatalf("replace with a failing successor: %v", err)
	}
	st := sl.status()
	if st.State != control.Ready || st.Pid != first.Pid || st.Port != first.Port || st.Restarts != 0 {
		t.Fatalf("after a failed replace: %+v, want the first process serving", st)
	}
}

func TestSlotRecyclesAfterMaxRequests(t *testing.T) {
	sl := testSlotWith(t, func(o *Options) { o.MaxRequests = 3 }, "", 10*time.Second, CrashBackoff{}, "serve")
	first := waitState(t, sl, control.Ready, 10*time.Second)
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
		if st.Pid != first.Pid && st.State == control.Ready {
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
	sl := testSlotWith(t, func(o *Options) { o.MaxMemory = 1 << 20 }, "", 10*time.Second, CrashBackoff{}, "serve")
	first := waitState(t, sl, control.Ready, 10*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := sl.status()
		if st.Pid != first.Pid && st.State == control.Ready {
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
	sl := testSlot(t, "", 10*time.Second, CrashBackoff{Initial: 10 * time.Millisecond}, "serve-with-child", pidFile)
	first := waitState(t, sl, control.Ready, 10*time.Second)
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
		if st := sl.status(); st.State == control.Ready && st.Pid != first.Pid {
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

// TestSlotCrashingAfterReadyKeepsRestarting: a replica that serves and
// then crashes, time after time, is brought back every time at the longest
// backoff, as Kubernetes does; it is never marked failed.
func TestSlotCrashingAfterReadyKeepsRestarting(t *testing.T) {
	sl := testSlot(t, "", 5*time.Second, CrashBackoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, MaxRestarts: 2}, "crash-after-ready", "150ms")
	testutil.WaitFor(t, 20*time.Second, "more restarts than MaxRestarts allows", func() bool {
		st := sl.status()
		if st.State == control.Failed {
			t.Fatalf("a replica that served was marked failed: %+v", st)
		}
		return st.Restarts >= 5
	})
}

// TestSlotNeverReadyAgainFails: a replica restarted after a crash whose
// processes never become ready again is marked failed after MaxRestarts.
func TestSlotNeverReadyAgainFails(t *testing.T) {
	marker := t.TempDir() + "/started"
	sl := testSlot(t, "", 5*time.Second, CrashBackoff{Initial: 10 * time.Millisecond, MaxRestarts: 2}, "serve-once", marker)
	first := waitState(t, sl, control.Ready, 10*time.Second)
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, sl, control.Failed, 20*time.Second)
	if !strings.Contains(st.Error, "did not become ready again") {
		t.Errorf("error = %q", st.Error)
	}
}
