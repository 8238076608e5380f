package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A test binary killed with SIGKILL (by go test's timeout, by the user,
// by CI) runs no cleanup, and what its tests started would run on: an
// instance on its ports, its replicas, an `up -d` copy in its own session,
// a tmux server, a browser. So TestMain marks every process of the run,
// and a reaper outlives the test binary to kill them all.
//
// The mark is runEnv=<random id> in the environment: TestMain sets it in
// its own, and every process started from then on inherits it, whatever
// its parent, session or process group. The reaper is this binary again,
// in a session of its own, reading a pipe whose write end only the test
// binary holds: end of file on it means the test binary has exited, dead
// or alive. It then kills every process whose environment carries the
// mark, until none is left.

const (
	// runEnv marks every process of an e2e run.
	runEnv = "MATTINGCTL_E2E_RUN"
	// reaperEnv makes the test binary the reaper of the run it names.
	reaperEnv = "MATTINGCTL_E2E_REAPER"
)

// reaper is the test binary's handle on its reaper process.
type reaper struct {
	cmd    *exec.Cmd
	life   *os.File // write end of the pipe the reaper watches
	report *os.File // read end of what the reaper says it killed
}

// newRunID returns a fresh random run id.
func newRunID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// startReaper marks this process's environment with a new run id, so
// that every process started later carries it, and starts its reaper.
func startReaper() (*reaper, error) {
	id, err := newRunID()
	if err != nil {
		return nil, err
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("reaper pipe: %w", err)
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("reaper pipe: %w", err)
	}
	cmd := exec.Command(os.Args[0])
	// Not marked itself: it would kill itself. No second of race
	// detector's sleep at its exit, which the test binary waits for.
	cmd.Env = append(withoutVar(os.Environ(), runEnv), reaperEnv+"="+id, quickExit())
	cmd.Stdin = lifeR
	// Its report goes on fd 3, not on stdout: go test waits for the test
	// binary's stdout to close, and must not wait for the reaper.
	cmd.ExtraFiles = []*os.File{reportW}
	// A session of its own: a signal to the test's process group (Ctrl-C
	// in a terminal) does not take the reaper with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the reaper: %w", err)
	}
	lifeR.Close()
	reportW.Close()
	if err := os.Setenv(runEnv, id); err != nil {
		return nil, err
	}
	return &reaper{cmd: cmd, life: lifeW, report: reportR}, nil
}

// stop tells the reaper the run is over and waits for it to sweep; it
// returns what the reaper had to kill, which the tests' own cleanups
// should have stopped.
func (r *reaper) stop() string {
	r.life.Close()
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r.report)
		done <- b
	}()
	var report []byte
	select {
	case report = <-done:
	case <-time.After(30 * time.Second):
		report = []byte("the reaper did not finish within 30s\n")
	}
	_ = r.cmd.Wait()
	return strings.TrimSpace(string(report))
}

// runReaper is the reaper's main: it waits for the test binary to exit
// (end of file on stdin), then kills the marked processes, and says on fd
// 3 which it killed.
func runReaper(id string) int {
	// End of file on stdin, or a new parent: a process that inherited
	// the pipe's other end would otherwise hold the sweep off for as long
	// as it lives, and it may be one the sweep is to kill.
	parent := os.Getppid()
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	for waiting := true; waiting; {
		select {
		case <-eof:
			waiting = false
		case <-time.After(100 * time.Millisecond):
			waiting = os.Getppid() == parent
		}
	}
	report := os.NewFile(3, "report")
	killed := sweep(id)
	if len(killed) > 0 && report != nil {
		fmt.Fprintf(report, "the reaper killed what the tests left running: %s\n", strings.Join(killed, "; "))
	}
	return 0
}

// sweep kills every process marked with id, again and again until a
// few looks in a row find none (a process forking as it is killed, or a
// supervisor restarting a replica, may leave a new one), and returns
// their descriptions.
func sweep(id string) []string {
	var killed []string
	seen := map[int]bool{}
	// Bounded: a process that cannot be killed (stuck in the kernel) must
	// not keep the reaper, and the test run waiting on it, for ever.
	deadline := time.Now().Add(20 * time.Second)
	for quiet := 0; quiet < 3 && time.Now().Before(deadline); {
		pids := marked(id)
		if len(pids) == 0 {
			quiet++
			time.Sleep(20 * time.Millisecond)
			continue
		}
		quiet = 0
		for _, pid := range pids {
			if !seen[pid] {
				seen[pid] = true
				killed = append(killed, describe([]int{pid}))
			}
			// Stopped first, so that a supervisor cannot restart what
			// is killed next; then killed.
			_ = syscall.Kill(pid, syscall.SIGSTOP)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return killed
}

// marked returns the live processes, other than this one, whose
// environment holds runEnv=id.
func marked(id string) []int {
	want := []byte("\x00" + runEnv + "=" + id + "\x00")
	names, _ := filepath.Glob("/proc/[0-9]*/environ")
	self := os.Getpid()
	var pids []int
	for _, n := range names {
		pid, err := strconv.Atoi(strings.Split(n, "/")[2])
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil || !bytes.Contains(append(append([]byte{0}, b...), 0), want) {
			continue
		}
		if alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// withoutVar returns env without the variable name.
func withoutVar(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
