package replica

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/logsafe"
)

// A replica's own process dies with the supervisor (Linux's parent-death
// signal), but what it forked does not: a daemon that called setsid, a
// worker pool. Without a reaper they ran on after a kill -9 of mattingctl
// until the next `up` of the same name swept them. The reaper is mattingctl
// itself, run again as a small child that outlives the supervisor (a
// process group of its own, no parent-death signal). It holds the read end
// of a pipe whose write end only the supervisor holds: end of file on it
// means the supervisor has died, however it died, and the reaper then
// sweeps what the tracker's state file lists (the instance's cgroup, or its
// recorded process groups, never a reused pid) and exits. On a clean stop
// the supervisor writes reaperStop first, and the reaper exits without
// sweeping. It holds no socket or port: every descriptor but its three
// standard ones is closed on exec.

// ReaperArg is the first argument that makes mattingctl run as a reaper:
// `mattingctl __reaper STATEFILE PID START`, which main hands to RunReaper.
const ReaperArg = "__reaper"

// reaperStop is what the supervisor writes to the pipe when it stops
// cleanly, having swept everything itself.
const reaperStop = "stop\n"

// reaperWait bounds how long Stop waits for the reaper to exit.
const reaperWait = 5 * time.Second

// Reaper is the running reaper of one instance, seen from its supervisor.
type Reaper struct {
	cmd  *exec.Cmd
	w    *os.File      // the pipe's write end; only the supervisor holds it
	done chan struct{} // closed once the reaper process has exited
	log  hclog.Logger

	mu       sync.Mutex // guards stopping
	stopping bool
}

// StartReaper runs command (the mattingctl binary), with ReaperArg and
// what RunReaper needs after it, as the reaper of the instance whose
// tracker is t, its log lines going to stderr. It logs a warning to log if
// the reaper ever exits before Stop. A nil tracker, an empty command, or a
// platform that records nothing to sweep (Windows) starts nothing and
// returns a nil Reaper, whose Stop does nothing.
func StartReaper(command []string, t *Tracker, stderr io.Writer, log hclog.Logger) (*Reaper, error) {
	if t == nil || len(command) == 0 || !reaperSupported {
		return nil, nil
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	t.mu.Lock()
	pid, start := t.rec.Pid, t.rec.Start
	t.mu.Unlock()
	r, w, err := os.Pipe() // both close on exec: only the reaper gets r, as its stdin
	if err != nil {
		return nil, fmt.Errorf("starting the reaper: %w", err)
	}
	defer r.Close()
	args := append(command[1:len(command):len(command)], ReaperArg, t.path, strconv.Itoa(pid), strconv.FormatInt(start, 10))
	cmd := exec.Command(command[0], args...)
	cmd.Stdin, cmd.Stderr = r, stderr
	cmd.Dir = "/" // so that it keeps no directory busy
	if os.Getenv("GORACE") == "" {
		// A race-enabled build (the end-to-end tests') otherwise sleeps a
		// second at exit, and Stop waits for it.
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	}
	cmd.SysProcAttr = reaperAttr()
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("starting the reaper (%s): %w", command[0], err)
	}
	rp := &Reaper{cmd: cmd, w: w, done: make(chan struct{}), log: log}
	go rp.wait()
	log.Debug("reaper started", "pid", cmd.Process.Pid)
	return rp, nil
}

func (rp *Reaper) wait() {
	awaitExit(rp.cmd.Process.Pid)
	err := rp.cmd.Wait()
	rp.mu.Lock()
	stopping := rp.stopping
	rp.mu.Unlock()
	if !stopping {
		rp.log.Warn("the reaper exited; if mattingctl is now killed with SIGKILL, what replicas forked outside their process group runs on until the next up of this name", "pid", rp.cmd.Process.Pid, "exit", exitFrom(rp.cmd.ProcessState, err).String())
	}
	close(rp.done)
}

// Pid returns the reaper's process id.
func (rp *Reaper) Pid() int { return rp.cmd.Process.Pid }

// Stop tells the reaper that the instance has stopped cleanly, so that it
// exits without sweeping, and waits a bounded time for it. Call it once
// the tracker is closed. It is safe on a nil Reaper and to call twice.
func (rp *Reaper) Stop() {
	if rp == nil {
		return
	}
	rp.mu.Lock()
	first := !rp.stopping
	rp.stopping = true
	rp.mu.Unlock()
	if first {
		_, _ = rp.w.WriteString(reaperStop)
		rp.w.Close()
	}
	select {
	case <-rp.done:
	case <-time.After(reaperWait):
		rp.log.Warn("the reaper did not exit; killing it", "pid", rp.cmd.Process.Pid)
		_ = rp.cmd.Process.Kill()
		<-rp.done
	}
}

// RunReaper is the reaper process: args are what follows ReaperArg, stdin
// the pipe from the supervisor, stderr where it logs. It returns the exit
// code.
func RunReaper(args []string, stdin io.Reader, stderr io.Writer) int {
	log := logsafe.Wrap(hclog.New(&hclog.LoggerOptions{Name: "mattingctl.reaper", Output: stderr, TimeFormat: time.TimeOnly}))
	if len(args) != 3 {
		log.Error("usage: mattingctl " + ReaperArg + " STATEFILE PID START (run by mattingctl up, not by hand)")
		return 2
	}
	pid, err1 := strconv.Atoi(args[1])
	start, err2 := strconv.ParseInt(args[2], 10, 64)
	if err1 != nil || err2 != nil {
		log.Error("PID and START must be numbers", "pid", args[1], "start", args[2])
		return 2
	}
	// Signals meant for the supervisor (Ctrl-C, a terminal that hangs up,
	// a SIGTERM to the whole unit) must not end the reaper before it: the
	// supervisor's stop tells it, and its death is what it waits for.
	// Nor may a stderr whose reader has gone (SIGPIPE) end it.
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	msg, _ := io.ReadAll(io.LimitReader(stdin, 64))
	if bytes.Equal(msg, []byte(reaperStop)) {
		return 0
	}
	return reap(args[0], pid, start, log)
}

// reap sweeps what the state file at path lists, when it is still the one
// that supervisor pid, started at start, wrote.
func reap(path string, pid int, start int64, log hclog.Logger) int {
	rec, err := loadState(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0 // nothing recorded, or swept already
	case err != nil:
		log.Error("mattingctl died; its state file cannot be read, so nothing is swept until the next up of its name", "supervisor", pid, "error", err)
		return 1
	case rec.Pid != pid || rec.Start != start:
		// A new instance of the name has taken the file over: what the
		// dead one left, that one has swept already.
		return 0
	}
	began := time.Now()
	killed := sweepRecord(rec, log)
	if killed > 0 {
		log.Warn("mattingctl died without stopping its replicas; killed what they left running", "supervisor", pid, "processes", killed, "took", time.Since(began).Round(time.Millisecond), "cgroup", rec.Cgroup)
	}
	return 0
}
