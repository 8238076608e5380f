package replica

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// threadsInWait counts this process's threads blocked in waitid or wait4,
// and returns how many threads it has in all.
func threadsInWait(t *testing.T) (waiting, all int) {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/syscall")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended meanwhile
		}
		all++
		nr, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		if n, err := strconv.Atoi(nr); err == nil && (n == unix.SYS_WAITID || n == unix.SYS_WAIT4) {
			waiting++
		}
	}
	return waiting, all
}

// TestRunningReplicasHoldNoThreads: a running replica costs mattingctl no
// OS thread (it used to be one each, blocked in waitid), and its exit is
// still seen at once. Not parallel: it counts the threads of the whole
// test binary.
func TestRunningReplicasHoldNoThreads(t *testing.T) {
	if !awaitExitWorks(t) {
		t.Skip("no pidfd here (Linux before 5.3, or refused by seccomp): each running replica holds a thread in waitid")
	}
	const n = 40
	_, before := threadsInWait(t)
	procs := make([]*Process, n)
	for i := range procs {
		p, err := Start(Spec{ID: i + 1, Port: 1, Command: []string{"sleep", "600"}}, newCapture().out)
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { _ = p.Kill() })
		procs[i] = p
	}
	waiting, after := threadsInWait(t)
	t.Logf("threads: %d before, %d with %d replicas running (%d in waitid or wait4)", before, after, n, waiting)
	if waiting > 0 {
		t.Errorf("%d threads are blocked in waitid or wait4 with %d replicas running, want none", waiting, n)
	}
	if after-before >= n/2 {
		t.Errorf("threads grew from %d to %d with %d replicas running, want far fewer than one a replica", before, after, n)
	}
	for _, p := range procs[:n/2] {
		if err := unix.Kill(p.Pid(), unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs[:n/2] {
		if got := waitExit(t, p, exitWait); got.Signal != "killed" {
			t.Errorf("pid %d: Exit() = %+v, want signal killed", p.Pid(), got)
		}
	}
	for _, p := range procs[n/2:] {
		select {
		case <-p.Done():
			t.Errorf("pid %d reported an exit it did not make: %+v", p.Pid(), p.Exit())
		default:
		}
	}
}

// awaitExitWorks reports whether awaitExit waits here, with a child that
// has exited already.
func awaitExitWorks(t *testing.T) bool {
	t.Helper()
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	ok := awaitExit(pid)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	return ok
}
