package daemon

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestProcessRunning: a live process runs; one that has exited does not,
// even while it is a zombie its parent has not reaped yet.
func TestProcessRunning(t *testing.T) {
	if !processRunning(os.Getpid())() {
		t.Error("this process is not running")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	running := processRunning(cmd.Process.Pid)
	if !running() {
		t.Error("a sleeping child is not running")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Not waited for yet: a zombie.
	testutil.WaitFor(t, 5*time.Second, "the killed child to stop running", func() bool { return !running() })
	_ = cmd.Wait()
	if running() {
		t.Error("a reaped child is running")
	}
}
