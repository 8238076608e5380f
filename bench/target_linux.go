package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// attackReplicas is how many replicas each attack's instance runs: two,
// of --max-inflight 8 each by default, so that 16 slots are what an
// attacker has to take.
const attackReplicas = 2

// target is a `mattingctl up` started for one attack, in a process
// group of its own and with Pdeathsig, so that it and its replicas (whose
// own Pdeathsig is mattingctl's death) end with the bench even when the
// bench is killed.
type target struct {
	pid      int
	port     int    // the proxy's; the admin listener has port-1 (the default)
	home     string // MATTINGCTL_HOME
	bin      string // the mattingctl binary, for `mattingctl status`
	logPath  string
	ctl      *control.Client
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd.Wait has returned
	logFile  *os.File
	stopOnce sync.Once
}

// startTarget starts `mattingctl up` with 2 replicas of fakemodel (run
// with replicaArgs), listening on 127.0.0.1 with the flags up's defaults
// and upArgs give, under `ulimit -n fileLimit` unless fileLimit is 0, and
// waits until both replicas are ready. The caller stops it.
func (e *environment) startTarget(ctx context.Context, name string, fileLimit int, upArgs, replicaArgs []string) (*target, error) {
	base, err := freeRange(attackReplicas + 2)
	if err != nil {
		return nil, err
	}
	t := &target{port: base + 1, bin: filepath.Join(e.work, "mattingctl"), exited: make(chan struct{})}
	t.home = filepath.Join(e.work, "home-"+name)
	tmp := filepath.Join(e.work, "tmp-"+name) // the default buffer directory goes under TMPDIR
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	args := append([]string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(t.port), "-r", strconv.Itoa(attackReplicas), "--log-level", "warn"}, upArgs...)
	for _, kv := range replicaEnv {
		args = append(args, "--env", kv)
	}
	args = append(append(args, "--", filepath.Join(e.work, "fakemodel")), replicaArgs...)
	t.cmd = exec.Command(t.bin, args...)
	if fileLimit > 0 {
		// The shell sets the limit (soft and hard) on itself, then execs
		// mattingctl in its place: the same pid, process group and
		// Pdeathsig.
		t.cmd = exec.Command("/bin/sh", append([]string{"-c", `ulimit -n "$1" && shift && exec "$@"`, "sh", strconv.Itoa(fileLimit), t.bin}, args...)...)
	}
	t.cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+t.home, "TMPDIR="+tmp)
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t.logPath = filepath.Join(e.work, "mattingctl-"+name+".log")
	if t.logFile, err = os.Create(t.logPath); err != nil {
		return nil, err
	}
	t.cmd.Stdout, t.cmd.Stderr = t.logFile, t.logFile
	if err := t.cmd.Start(); err != nil {
		t.logFile.Close()
		return nil, fmt.Errorf("starting mattingctl: %w", err)
	}
	t.pid = t.cmd.Process.Pid
	go func() { _ = t.cmd.Wait(); close(t.exited) }()
	if err := t.waitReady(ctx, 30*time.Second); err != nil {
		t.stop()
		return nil, err
	}
	return t, nil
}

// waitReady waits until every replica is ready, the instance exits, or
// timeout passes.
func (t *target) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if t.ctl == nil {
			t.ctl, _ = control.Connect(t.home, "") // no socket until it is up
		}
		if t.ctl != nil {
			if st, err := t.status(ctx); err == nil && st.Ready() == attackReplicas && len(st.Replicas) == attackReplicas {
				return nil
			}
		}
		select {
		case <-t.exited:
			return fmt.Errorf("mattingctl up exited before its replicas were ready:\n%s", t.lastLog(8))
		case <-ctx.Done():
			return fmt.Errorf("mattingctl up not ready in %s (log %s):\n%s", timeout, t.logPath, t.lastLog(8))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// status asks the instance for its status over the control socket, for
// at most 5 s.
func (t *target) status(ctx context.Context) (control.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return t.ctl.Status(ctx)
}

// url is the proxy's URL for path.
func (t *target) url(path string) string { return "http://" + t.addr() + path }

func (t *target) addr() string { return "127.0.0.1:" + strconv.Itoa(t.port) }

// peakRSS is the instance's peak resident memory (VmHWM) so far, in bytes.
func (t *target) peakRSS() int64 { return procStatusKB(t.pid, "VmHWM") << 10 }

// cpuTime is the CPU time the instance's supervisor (not its replicas)
// has used so far, user and system, or 0.
func (t *target) cpuTime() time.Duration {
	st, err := readProcStat(t.pid)
	if err != nil {
		return 0
	}
	return st.cpu
}

// openFiles counts the descriptors the instance holds, or -1.
func (t *target) openFiles() int {
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(t.pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}

// log is what the instance and its replicas have printed so far.
func (t *target) log() string {
	b, _ := os.ReadFile(t.logPath)
	return string(b)
}

func (t *target) lastLog(n int) string { return lastLines(t.log(), n) }

// stop ends the instance as Ctrl-C would (SIGTERM), then kills its
// process group if it has not exited within 15 s. It may be called more
// than once.
func (t *target) stop() { t.stopOnce.Do(t.terminate) }

func (t *target) terminate() {
	_ = syscall.Kill(t.pid, syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-t.pid, syscall.SIGKILL) // the replicas follow by their Pdeathsig
		<-t.exited
	}
	t.logFile.Close()
}

// procStatusKB reads a "kB" field of /proc/pid/status, or 0.
func procStatusKB(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb
			}
		}
	}
	return 0
}

// timedStatus runs `mattingctl status`, as a user does, and returns how
// long it took.
func (t *target) timedStatus(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, t.bin, "status")
	c.Env = append(os.Environ(), "MATTINGCTL_HOME="+t.home)
	t0 := time.Now()
	out, err := c.CombinedOutput()
	took := time.Since(t0)
	if err != nil {
		return took, fmt.Errorf("mattingctl status: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return took, nil
}
