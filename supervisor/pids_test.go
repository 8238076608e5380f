package supervisor

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// A replica that died starting while a pids limit refused forks is retried
// as a start error, not given up on as a broken command; other errors pass
// through as they are.
func TestStarvedStartIsTransient(t *testing.T) {
	exited := errors.New("replica-1 (port 9111) exited before becoming ready (exit code 2)")
	if transientStartError(exited) {
		t.Fatal("an exit before ready is transient by itself: the test proves nothing")
	}
	err := starvedStart(exited)
	if !transientStartError(err) {
		t.Errorf("starvedStart(%v) is not transient", exited)
	}
	if !strings.HasPrefix(err.Error(), exited.Error()+", while ") || !strings.Contains(err.Error(), "refused to fork its threads or processes") {
		t.Errorf("starvedStart = %q", err)
	}
	other := &os.PathError{Op: "fork/exec", Path: "/bin/app", Err: syscall.ENOENT}
	if got := explainTaskLimit(other); got != error(other) {
		t.Errorf("explainTaskLimit changed a start error that is not EAGAIN: %v", got)
	}
	eagain := &os.PathError{Op: "fork/exec", Path: "/bin/app", Err: syscall.EAGAIN}
	if got := explainTaskLimit(eagain); !errors.Is(got, syscall.EAGAIN) {
		t.Errorf("explainTaskLimit lost the EAGAIN: %v", got)
	}
}
