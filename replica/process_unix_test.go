//go:build unix

package replica

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

const exitWait = 15 * time.Second // generous: the helper is a race-enabled test binary

func TestStartReportsExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code int
		want string
	}{
		{0, "exit code 0"},
		{3, "exit code 3"},
		{255, "exit code 255"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			t.Parallel()
			p := startHelper(t, newCapture(), "exit", strconv.Itoa(tt.code))
			got := waitExit(t, p, exitWait)
			if want := (Exit{Code: tt.code}); got != want {
				t.Errorf("Exit() = %+v, want %+v", got, want)
			}
			if got.String() != tt.want {
				t.Errorf("Exit().String() = %q, want %q", got.String(), tt.want)
			}
		})
	}
}

func TestStartReportsSignal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sig  syscall.Signal
		name string
	}{
		{syscall.SIGKILL, "killed"},
		{syscall.SIGTERM, "terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCapture()
			p := startHelper(t, c, "sleep")
			testutil.WaitFor(t, exitWait, "the helper to start", func() bool { return strings.Contains(c.stdout.String(), "ready") })
			if err := syscall.Kill(p.Pid(), tt.sig); err != nil {
				t.Fatal(err)
			}
			got := waitExit(t, p, exitWait)
			if want := (Exit{Code: -1, Signal: tt.name}); got != want {
				t.Errorf("Exit() = %+v, want %+v (a crash, not requested)", got, want)
			}
			if want := "signal " + tt.name; got.String() != want {
				t.Errorf("Exit().String() = %q, want %q", got.String(), want)
			}
		})
	}
}

func TestStopGraceful(t *testing.T) {
	t.Parallel()
	c := newCapture()
	p := startHelper(t, c, "trapterm")
	testutil.WaitFor(t, exitWait, "the helper to trap SIGTERM", func() bool { return strings.Contains(c.stdout.String(), "ready") })

	start := time.Now()
	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Stop took %s; the child exits on SIGTERM, so it should not wait out the grace", elapsed)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before Done was closed")
	}
	if got, want := p.Exit(), (Exit{Code: 0, Requested: true}); got != want {
		t.Errorf("Exit() = %+v, want %+v", got, want)
	}
	testutil.WaitFor(t, exitWait, "the SIGTERM line", func() bool {
		return strings.Contains(c.stdout.String(), "replica-1 | got SIGTERM\n")
	})
}

func TestStopKillsAfterGrace(t *testing.T) {
	t.Parallel()
	c := newCapture()
	p := startHelper(t, c, "ignoreterm")
	testutil.WaitFor(t, exitWait, "the helper to ignore SIGTERM", func() bool { return strings.Contains(c.stdout.String(), "ready") })

	const grace = 300 * time.Millisecond
	start := time.Now()
	if err := p.Stop(grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if elapsed := time.Since(start); elapsed < grace {
		t.Errorf("Stop returned after %s, before the grace of %s", elapsed, grace)
	}
	if got, want := p.Exit(), (Exit{Code: -1, Signal: "killed", Requested: true}); got != want {
		t.Errorf("Exit() = %+v, want %+v", got, want)
	}
}

func TestStopKillsProcessGroup(t *testing.T) {
	t.Parallel()
	c := newCapture()
	p := startHelper(t, c, "spawn")
	var gpid int
	testutil.WaitFor(t, exitWait, "the grandchild to start", func() bool {
		out := c.stdout.String()
		if !strings.Contains(out, "replica-1 | ready\n") {
			return false // the grandchild ignores SIGTERM from here on
		}
		_, after, ok := strings.Cut(out, "grandchild ")
		if !ok {
			return false
		}
		n, _ := fmt.Sscanf(after, "%d", &gpid)
		return n == 1
	})
	t.Cleanup(func() { _ = syscall.Kill(gpid, syscall.SIGKILL) })
	if !alive(gpid) {
		t.Fatalf("grandchild %d is not running before Stop", gpid)
	}

	// The child exits on SIGTERM at once; the grandchild ignores it and
	// must be killed with the group after the leader is gone.
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got, want := p.Exit(), (Exit{Code: 0, Requested: true}); got != want {
		t.Errorf("Exit() = %+v, want %+v", got, want)
	}
	testutil.WaitFor(t, exitWait, fmt.Sprintf("grandchild %d to be gone", gpid), func() bool { return !alive(gpid) })
}

// alive tells whether pid is a process that has not exited. A zombie (one
// exited but not yet reaped by whoever adopted it) counts as gone.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !os.IsNotExist(err)
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

func TestStopTwice(t *testing.T) {
	t.Parallel()
	t.Run("sequential", func(t *testing.T) {
		t.Parallel()
		c := newCapture()
		p := startHelper(t, c, "trapterm")
		testutil.WaitFor(t, exitWait, "the helper to start", func() bool { return strings.Contains(c.stdout.String(), "ready") })
		for i := range 2 {
			if err := p.Stop(10 * time.Second); err != nil {
				t.Fatalf("Stop #%d: %v", i+1, err)
			}
		}
		if got, want := p.Exit(), (Exit{Code: 0, Requested: true}); got != want {
			t.Errorf("Exit() = %+v, want %+v", got, want)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		c := newCapture()
		p := startHelper(t, c, "ignoreterm")
		testutil.WaitFor(t, exitWait, "the helper to start", func() bool { return strings.Contains(c.stdout.String(), "ready") })
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() { errs[i] = p.Stop(100 * time.Millisecond) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Stop #%d: %v", i+1, err)
			}
		}
		if got, want := p.Exit(), (Exit{Code: -1, Signal: "killed", Requested: true}); got != want {
			t.Errorf("Exit() = %+v, want %+v", got, want)
		}
	})
	t.Run("after exit", func(t *testing.T) {
		t.Parallel()
		p := startHelper(t, newCapture(), "exit", "4")
		waitExit(t, p, exitWait)
		if err := p.Stop(time.Second); err != nil {
			t.Fatalf("Stop after exit: %v", err)
		}
		// It crashed before anyone asked: still not requested.
		if got, want := p.Exit(), (Exit{Code: 4}); got != want {
			t.Errorf("Exit() = %+v, want %+v", got, want)
		}
	})
}

func TestStartPassesEnvironmentAndArgs(t *testing.T) {
	// The supervisor's own PORT and MATTINGCTL_REPLICA must not reach the
	// child. (t.Setenv rules out t.Parallel here.)
	t.Setenv("PORT", "1")
	t.Setenv("MATTINGCTL_REPLICA", "99")
	c := newCapture()
	spec := Spec{
		ID:      2,
		Port:    12345,
		Command: helperCommand("env", "--addr=127.0.0.1:{port}", "--name=r{replica}"),
		Env:     append(helperEnv, "HELPER_EXTRA=two words"),
	}
	p, err := Start(spec, c.out)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	if got := waitExit(t, p, exitWait); got != (Exit{}) {
		t.Fatalf("Exit() = %+v, want exit code 0", got)
	}
	want := "replica-2 | PORT=12345\n" +
		"replica-2 | MATTINGCTL_REPLICA=2\n" +
		"replica-2 | HELPER_EXTRA=two words\n" +
		"replica-2 | ARGS=--addr=127.0.0.1:12345 --name=r2\n"
	testutil.WaitFor(t, exitWait, "the child's output", func() bool { return c.stdout.String() == want })
	if p.Spec().ID != 2 || p.StartedAt().IsZero() || p.Pid() <= 0 {
		t.Errorf("Spec().ID = %d, StartedAt() = %v, Pid() = %d", p.Spec().ID, p.StartedAt(), p.Pid())
	}
}

func TestStartSeparatesStderr(t *testing.T) {
	t.Parallel()
	c := newCapture()
	p := startHelper(t, c, "stderr")
	waitExit(t, p, exitWait)
	testutil.WaitFor(t, exitWait, "both streams", func() bool {
		return c.stdout.String() == "replica-1 | to stdout\n" && c.stderr.String() == "replica-1 | to stderr\n"
	})
}

func TestStartBadCommand(t *testing.T) {
	t.Parallel()
	_, err := Start(Spec{ID: 1, Command: []string{"/nonexistent/mattingctl-model-server"}}, &Output{Stdout: os.Stdout, Stderr: os.Stderr})
	if want := `command "/nonexistent/mattingctl-model-server": no such file`; err == nil || err.Error() != want {
		t.Fatalf("Start = %v, want %q", err, want)
	}
}

func TestExitString(t *testing.T) {
	tests := []struct {
		exit Exit
		want string
	}{
		{Exit{Code: 0}, "exit code 0"},
		{Exit{Code: 1, Requested: true}, "exit code 1"},
		{Exit{Code: -1, Signal: "killed"}, "signal killed"},
		{Exit{Code: -1, Err: errors.New("wait: no child processes")}, "wait: no child processes"},
	}
	for _, tt := range tests {
		if got := tt.exit.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.exit, got, tt.want)
		}
	}
	if got := exitFrom(nil, nil); got.Code != -1 || !errors.Is(got.Err, errNoState) {
		t.Errorf("exitFrom(nil, nil) = %+v, want code -1 and errNoState", got)
	}
}
