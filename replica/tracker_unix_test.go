//go:build unix

package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// startLoose starts the helper in mode in a process group of its own and
// outside any tracker, as an unrelated program would be, and kills it when
// the test ends. done is closed when it has exited.
func startLoose(t *testing.T, mode ...string) (pid int, done <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperProcess$", "--"}, mode...)...)
	cmd.Env = append(os.Environ(), helperEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(ch)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-ch
	})
	return cmd.Process.Pid, ch
}

func writeState(t *testing.T, dir, name string, rec stateRecord) {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(StatePath(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readState(t *testing.T, dir, name string) stateRecord {
	t.Helper()
	b, err := os.ReadFile(StatePath(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	var rec stateRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	_, err := procStart(pid)
	return err == nil
}

func openTracker(t *testing.T, dir, name string) *Tracker {
	t.Helper()
	tr, err := OpenTracker(dir, name, nil)
	if err != nil {
		t.Fatalf("OpenTracker: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// A pid in the state file whose process started at another time than
// recorded is a later process that reuses the pid: the sweep spares it.
func TestSweepSparesAReusedPid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pid, done := startLoose(t, "sleep")
	start, err := procStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The writer, pid 0, is no process: a dead instance. The recorded leader
	// started before this one, as a pid is reused by a later process.
	writeState(t, dir, "reused", stateRecord{Groups: []groupRecord{{Pgid: pid, Start: start - 1}}})
	tr := openTracker(t, dir, "reused")
	// The sweep returns once what it killed is gone (or a zombie).
	if !running(pid) {
		t.Fatalf("the sweep killed pid %d, whose start time differs from the record", pid)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if !running(pid) {
		t.Fatalf("Close killed pid %d, which the instance did not start", pid)
	}

	// The control: recorded with its true start time, it is swept.
	writeState(t, dir, "reused", stateRecord{Groups: []groupRecord{{Pgid: pid, Start: start}}})
	openTracker(t, dir, "reused")
	select {
	case <-done:
	default:
		if running(pid) {
			t.Fatalf("the sweep left pid %d, recorded with its start time, running", pid)
		}
	}
}

// A state file whose writer still runs is not swept: that instance's
// replicas are alive and its own.
func TestSweepRefusesARunningWriter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pid, _ := startLoose(t, "sleep")
	start, err := procStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	writeState(t, dir, "live", stateRecord{Pid: pid, Start: start})
	_, err = OpenTracker(dir, "live", nil)
	if err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("OpenTracker = %v, want an error saying the writer is still running", err)
	}
	if !running(pid) {
		t.Fatal("the writer was killed")
	}
}

func TestSweepIgnoresAnUnreadableStateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(StatePath(dir, "junk"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := openTracker(t, dir, "junk")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(StatePath(dir, "junk")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file left after Close: %v", err)
	}
}

var grandchildLine = regexp.MustCompile(`grandchild (\d+)`)

// startTracked starts the helper in mode as a replica under tr and returns
// it with the pid of the grandchild it reports.
func startTracked(t *testing.T, tr *Tracker, mode string) (*Process, int) {
	t.Helper()
	c := newCapture()
	p, err := Start(Spec{ID: 1, Command: helperCommand(mode), Env: helperEnv, Tracker: tr}, c.out)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	// Registered after Kill, so run before it: what the helper said, had
	// it not said its grandchild's pid in time (seen once under
	// go test ./... beside two busy loops, not reproduced since).
	t.Cleanup(func() {
		if t.Failed() {
			exit := "still running"
			select {
			case <-p.Done():
				exit = fmt.Sprintf("exited: %+v", p.Exit())
			default:
			}
			t.Logf("the helper (%s), pid %d, %s; its stdout: %q; its stderr: %q",
				mode, p.Pid(), exit, c.stdout.String(), c.stderr.String())
		}
	})
	var gc int
	testutil.WaitFor(t, exitWait, "the grandchild's pid", func() bool {
		m := grandchildLine.FindStringSubmatch(c.stdout.String())
		if m == nil {
			return false
		}
		gc, _ = strconv.Atoi(m[1])
		return running(gc)
	})
	t.Cleanup(func() { _ = syscall.Kill(gc, syscall.SIGKILL) })
	return p, gc
}

// After its supervisor was killed (its replica died of the parent-death
// signal), a replica's child in its process group is swept by the next
// tracker of the name, from the process group in the state file.
func TestSweepKillsWhatAKilledSupervisorLeft(t *testing.T) {
	t.Setenv(cgroupEnv, "off") // process groups only: the fallback
	dir := t.TempDir()
	tr1 := openTracker(t, dir, "dead")
	if tr1.Cgroup() != "" {
		t.Fatalf("Cgroup() = %q with %s=off", tr1.Cgroup(), cgroupEnv)
	}
	p, gc := startTracked(t, tr1, "spawn")
	if g := readState(t, dir, "dead").Groups; len(g) != 1 || g[0].Pgid != p.Pid() {
		t.Fatalf("state file lists %+v, want the group of pid %d", g, p.Pid())
	}
	// As Pdeathsig does when the supervisor is killed: the leader dies,
	// its child lives on in the group.
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, p, exitWait)
	if !running(gc) {
		t.Fatal("the grandchild died with the leader: nothing to sweep")
	}
	openTracker(t, dir, "dead")
	if running(gc) {
		t.Errorf("grandchild %d still running after the next tracker's sweep", gc)
	}
}

func TestStopKillsWholeGroupAndForgetsIt(t *testing.T) {
	t.Setenv(cgroupEnv, "off")
	dir := t.TempDir()
	tr := openTracker(t, dir, "stop")
	p, gc := startTracked(t, tr, "spawn")
	if err := p.Stop(0); err != nil {
		t.Fatal(err)
	}
	if running(gc) {
		t.Errorf("grandchild %d still running after Stop", gc)
	}
	if g := readState(t, dir, "stop").Groups; len(g) != 0 {
		t.Errorf("state file still lists %+v after Stop", g)
	}
}

func TestStartRefusesAPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = Start(Spec{ID: 3, Port: port, Command: helperCommand("sleep"), Env: helperEnv}, newCapture().out)
	if err == nil || !strings.Contains(err.Error(), "replica-3: port "+strconv.Itoa(port)+" is already in use") {
		t.Fatalf("Start = %v, want replica-3's port %d already in use", err, port)
	}
}
