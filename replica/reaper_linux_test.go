package replica

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// startTestReaper starts the reaper as a helper process (TestHelperProcess
// runs RunReaper), with its log in the returned buffer. The helper gate
// goes into this process's environment, which the reaper inherits: the
// caller must not be parallel.
func startTestReaper(t *testing.T, tr *Tracker) (*Reaper, *testutil.SyncBuffer) {
	t.Helper()
	for _, kv := range helperEnv {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var out testutil.SyncBuffer
	rp, err := StartReaper(helperCommand(), tr, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rp.Stop)
	return rp, &out
}

// supervisorDies does to the reaper what the supervisor's death does: the
// pipe's write end closes without the stop message.
func supervisorDies(t *testing.T, rp *Reaper) {
	t.Helper()
	rp.mu.Lock()
	rp.stopping = true // no warning that it exited: the test expects it
	rp.mu.Unlock()
	rp.w.Close()
	select {
	case <-rp.done:
	case <-time.After(2 * killWait):
		t.Fatal("the reaper did not exit after the supervisor's pipe closed")
	}
	if code := rp.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the reaper exited %d", code)
	}
}

// When the supervisor goes without a stop, the reaper sweeps at once what
// the state file lists: with a cgroup, a grandchild that left the
// replica's process group with setsid; without one, a grandchild in the
// group that ignores SIGTERM.
func TestReaperSweepsWhenTheSupervisorGoes(t *testing.T) {
	for _, mode := range []string{"cgroup", "off"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			var tr *Tracker
			helper := "setsidchild"
			if mode == "off" {
				t.Setenv(cgroupEnv, "off")
				tr, helper = openTracker(t, dir, "reap"), "spawn"
			} else {
				tr = cgroupTracker(t, dir, "reap")
			}
			p, gc := startTracked(t, tr, helper)
			rp, out := startTestReaper(t, tr)
			if !running(gc) || !running(p.Pid()) {
				t.Fatal("the replica or its grandchild is not running before the sweep")
			}
			supervisorDies(t, rp)
			if running(gc) {
				t.Errorf("grandchild %d still runs after the reaper swept", gc)
			}
			select {
			case <-p.Done():
			case <-time.After(exitWait):
				t.Errorf("replica %d still runs after the reaper swept", p.Pid())
			}
			if !strings.Contains(out.String(), "killed what they left running") || !strings.Contains(out.String(), "processes=2") {
				t.Errorf("the reaper's log does not say what it killed:\n%s", out.String())
			}
		})
	}
}

// On a clean stop the supervisor has swept already: the reaper exits
// without touching anything, even what still runs.
func TestReaperStopSweepsNothing(t *testing.T) {
	dir := t.TempDir()
	tr := openTracker(t, dir, "stop")
	p, gc := startTracked(t, tr, "spawn")
	rp, out := startTestReaper(t, tr)
	rp.Stop()
	if code := rp.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the reaper exited %d after Stop", code)
	}
	if !running(gc) || !running(p.Pid()) {
		t.Errorf("the reaper killed processes on a clean stop:\n%s", out.String())
	}
	rp.Stop() // twice: nothing more
}

// A state file that another instance of the name has taken over (a new
// `up` after the supervisor died) is not the reaper's: it sweeps nothing.
func TestReaperSparesAnotherInstancesFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pid, _ := startLoose(t, "sleep")
	start, err := procStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	writeState(t, dir, "taken", stateRecord{Pid: os.Getpid() + 1, Start: 1, Groups: []groupRecord{{Pgid: pid, Start: start}}})
	var log testutil.SyncBuffer
	if code := reap(StatePath(dir, "taken"), os.Getpid(), 1, hclog.New(&hclog.LoggerOptions{Output: &log})); code != 0 {
		t.Errorf("reap = %d, want 0", code)
	}
	if !running(pid) {
		t.Fatal("the reaper swept a state file another instance wrote")
	}
	// The control: its own file, the same record, is swept.
	writeState(t, dir, "own", stateRecord{Pid: os.Getpid(), Start: 1, Groups: []groupRecord{{Pgid: pid, Start: start}}})
	reap(StatePath(dir, "own"), os.Getpid(), 1, hclog.New(&hclog.LoggerOptions{Output: &log}))
	if running(pid) {
		t.Fatalf("the reaper left a recorded process running:\n%s", log.String())
	}
}

func TestRunReaperArgs(t *testing.T) {
	t.Parallel()
	var out testutil.SyncBuffer
	if code := RunReaper([]string{"only-one"}, strings.NewReader(""), &out); code != 2 || !strings.Contains(out.String(), "usage") {
		t.Errorf("RunReaper(one argument) = %d: %s", code, out.String())
	}
	if code := RunReaper([]string{"/nonexistent", "x", "1"}, strings.NewReader(""), &out); code != 2 {
		t.Errorf("RunReaper(pid x) = %d", code)
	}
	// A stop message: nothing to do, whatever the file says.
	if code := RunReaper([]string{"/nonexistent", "1", "1"}, strings.NewReader(reaperStop), &out); code != 0 {
		t.Errorf("RunReaper(stop) = %d", code)
	}
	// The supervisor gone, no state file: nothing recorded, nothing to do.
	if code := RunReaper([]string{"/nonexistent/x.procs.json", "1", "1"}, strings.NewReader(""), &out); code != 0 {
		t.Errorf("RunReaper(EOF, no state file) = %d: %s", code, out.String())
	}
}
