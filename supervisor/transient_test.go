//go:build unix

package supervisor

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"

	"github.com/mattingctl/mattingctl/replica"
)

func TestTransientStartError(t *testing.T) {
	for _, err := range []error{
		&os.SyscallError{Syscall: "pipe2", Err: syscall.EMFILE},
		&os.PathError{Op: "fork/exec", Path: "/bin/app", Err: syscall.EAGAIN},
		&os.SyscallError{Syscall: "pipe2", Err: syscall.ENFILE},
		&os.PathError{Op: "fork/exec", Path: "/bin/app", Err: syscall.ENOMEM},
		errors.New("replica-1: port 9111 " + replica.ErrPortInUse.Error()), // only the wrapped sentinel counts
	} {
		want := !strings.Contains(err.Error(), "9111")
		if got := transientStartError(err); got != want {
			t.Errorf("transientStartError(%v) = %v, want %v", err, got, want)
		}
	}
	if !transientStartError(errors.Join(errors.New("starting replica-1"), replica.ErrPortInUse)) {
		t.Error("a held port is not transient")
	}
	if transientStartError(&os.PathError{Op: "fork/exec", Path: "/bin/app", Err: syscall.ENOENT}) {
		t.Error("a missing command is transient")
	}
}

// hookedSlot starts a slot, like testSlotWith, whose starts first call
// hook.
func hookedSlot(t *testing.T, backoff CrashBackoff, hook func() error, mode ...string) *slot {
	t.Helper()
	s := newTestSupervisor(t, func(o *Options) { o.Backoff = backoff }, mode...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.desired = 1
	sl := newSlot(s, 1, "")
	sl.testHookStart = hook
	s.slots[1] = sl
	go sl.run()
	return sl
}

// failing returns a start hook that fails with err while *n > 0, counting
// down.
func failing(n *atomic.Int32, err error) func() error {
	return func() error {
		if n.Add(-1) >= 0 {
			return err
		}
		return nil
	}
}

var errEMFILE = &os.SyscallError{Syscall: "pipe2", Err: syscall.EMFILE}

// TestSlotRetriesTransientStartErrors: out of file descriptors, a replica
// is retried with the crash backoff's delays, counted neither as a boot
// failure nor as crashes (MaxRestarts 1 would fail it after two).
func TestSlotRetriesTransientStartErrors(t *testing.T) {
	backoff := CrashBackoff{Initial: 100 * time.Millisecond, MaxRestarts: 1}
	var fails atomic.Int32
	fails.Store(3)
	sl := hookedSlot(t, backoff, failing(&fails, errEMFILE), "serve")
	st := waitState(t, sl, control.Backoff, 5*time.Second)
	if !strings.Contains(st.Error, "too many open files") || st.Pid != 0 {
		t.Fatalf("while retrying the first start: %+v", st)
	}
	first := waitState(t, sl, control.Ready, 10*time.Second)
	if first.Restarts != 0 || first.Error != "" {
		t.Fatalf("ready after 3 transient start errors: %+v", first)
	}

	// After a crash, too: kill it, and its restart fails 3 times first.
	fails.Store(3)
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var st2 control.ReplicaStatus
	testutil.WaitFor(t, 10*time.Second, "the killed replica back", func() bool {
		st2 = sl.status()
		return st2.State == control.Ready && st2.Pid != first.Pid
	})
	if st2.Restarts != 1 || st2.LastRestart != "crash: signal killed" || st2.Error != "" || fails.Load() >= 0 {
		t.Fatalf("after a crash and 3 transient start errors: %+v (hook calls left %d)", st2, fails.Load())
	}
}

// TestSlotStartErrorOfTheCommandFails: any other start error is the
// command's and fails the replica, as before.
func TestSlotStartErrorOfTheCommandFails(t *testing.T) {
	var fails atomic.Int32
	fails.Store(1)
	sl := hookedSlot(t, CrashBackoff{Initial: 10 * time.Millisecond}, failing(&fails, &os.PathError{Op: "fork/exec", Path: "/bin/app", Err: syscall.EACCES}), "serve")
	st := waitState(t, sl, control.Failed, 5*time.Second)
	if !strings.Contains(st.Error, "permission denied") {
		t.Fatalf("failed for %q", st.Error)
	}
}

// TestSlotWaitsForAHeldPort: a crashed replica whose port another process
// holds waits, in backoff, until it is free, however long that takes.
func TestSlotWaitsForAHeldPort(t *testing.T) {
	var logs testutil.SyncBuffer
	sl := testSlotWith(t, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	}, "", 10*time.Second, CrashBackoff{Initial: 100 * time.Millisecond, MaxRestarts: 1}, "serve")
	first := waitState(t, sl, control.Ready, 10*time.Second)
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	testutil.WaitFor(t, 5*time.Second, "the killed replica's port to be free for the taking", func() bool {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(first.Port))
		return err == nil
	})
	defer ln.Close()
	testutil.WaitFor(t, 10*time.Second, "the replica to wait for its port", func() bool {
		st := sl.status()
		return st.State == control.Backoff && strings.Contains(st.Error, "is already in use")
	})
	// Three tries, more than MaxRestarts allows crashes: still in backoff.
	testutil.WaitFor(t, 10*time.Second, "three tries", func() bool {
		return strings.Count(logs.String(), "replica could not be started; retrying") >= 3
	})
	if st := sl.status(); st.State != control.Backoff {
		t.Fatalf("with its port held: %+v", st)
	}
	ln.Close()
	st := waitState(t, sl, control.Ready, 10*time.Second)
	if st.Port != first.Port || st.Restarts != 1 {
		t.Fatalf("after the port was freed: %+v", st)
	}
}
