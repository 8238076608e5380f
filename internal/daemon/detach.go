// Package daemon runs an instance in the background (`up -d`) and reads
// the log it leaves (`logs`).
package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// LogPath is where an instance started with `up -d` writes its log.
func LogPath(dir, name string) string { return filepath.Join(dir, name+".log") }

// DetachOptions say how to start an instance in the background.
type DetachOptions struct {
	Name     string
	StateDir string // empty: control.StateDir()
	// Args are the arguments of `mattingctl` for the background process:
	// the `up` command line as given.
	Args []string
	// Wait bounds the wait for every replica to be ready.
	Wait time.Duration
	// Progress, if not nil, receives a line when each replica becomes
	// ready, and every 10 seconds why those not ready yet are not.
	Progress io.Writer
}

// ErrInterrupted is wrapped by Detach's error when SIGINT or SIGTERM came
// before the instance was ready: the instance has been stopped.
var ErrInterrupted = errors.New("interrupted")

// interruptStopWait bounds the wait for the instance to stop after an
// interrupt, before it is killed; a second interrupt kills it at once.
const interruptStopWait = time.Minute

// Detach starts `mattingctl ARGS` in the background, in a session of its
// own, with its output appended to the instance's log file, and returns
// once every replica is ready, reporting their progress meanwhile. If the
// instance exits first, the error is its own last error; if it is not
// ready in time, or SIGINT or SIGTERM comes first (ErrInterrupted), it is
// stopped. Either way nothing is left running.
func Detach(opts DetachOptions) (control.Status, error) {
	dir := opts.StateDir
	if dir == "" {
		d, err := control.StateDir()
		if err != nil {
			return control.Status{}, err
		}
		dir = d
	}
	if err := control.EnsureStateDir(dir); err != nil {
		return control.Status{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return control.Status{}, fmt.Errorf("finding the mattingctl binary: %w", err)
	}
	logPath := LogPath(dir, opts.Name)
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return control.Status{}, fmt.Errorf("log file: %w", err)
	}
	defer log.Close()
	start, _ := log.Seek(0, io.SeekEnd)
	fmt.Fprintf(log, "==> mattingctl %s, %s\n", strings.Join(opts.Args, " "), time.Now().Format(time.RFC3339))

	// Caught before the start, so that no interrupt is lost: the instance,
	// in a session of its own, does not get the terminal's.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	cmd := exec.Command(self, opts.Args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+dir, detachedEnv+"=1")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = detachAttr()
	if err := cmd.Start(); err != nil {
		return control.Status{}, fmt.Errorf("starting the background instance: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	begun := time.Now()
	progress := newStartProgress(opts.Progress, begun)
	deadline := begun.Add(opts.Wait)
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-exited:
			return control.Status{}, lastError(logPath, start)
		case <-sigs:
			stopInstance(cmd, exited, sigs)
			return control.Status{}, fmt.Errorf("%w: stopped the background instance %q (pid %d) before it was ready; its log: %s",
				ErrInterrupted, opts.Name, cmd.Process.Pid, logPath)
		case <-poll.C:
		}
		if st, err := status(dir, opts.Name); err == nil {
			progress.update(st, time.Now())
			if allReady(st) {
				return st, nil
			}
		}
		if time.Now().After(deadline) {
			stopInstance(cmd, exited, sigs)
			return control.Status{}, fmt.Errorf("instance %q was not ready within %s; stopped it (see %s)", opts.Name, opts.Wait, logPath)
		}
	}
}

// stopInstance stops the background instance: SIGINT, which stops it
// gracefully, then SIGKILL after interruptStopWait or at a further signal
// in sigs. It returns once the instance has exited.
func stopInstance(cmd *exec.Cmd, exited <-chan error, sigs <-chan os.Signal) {
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		_ = cmd.Process.Kill() // no SIGINT here (Windows)
	}
	t := time.NewTimer(interruptStopWait)
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-sigs:
	case <-t.C:
	}
	_ = cmd.Process.Kill()
	<-exited
}

// status asks the instance for its status.
func status(dir, name string) (control.Status, error) {
	c, err := control.Connect(dir, name)
	if err != nil {
		return control.Status{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Status(ctx)
}

// allReady reports whether every replica of st is ready.
func allReady(st control.Status) bool {
	if len(st.Replicas) != st.Desired {
		return false
	}
	for _, r := range st.Replicas {
		if r.State != control.Ready {
			return false
		}
	}
	return true
}

// lastError returns the last "mattingctl: " line the instance wrote to its
// log after offset, with the indented lines that continue it (the output
// an exit before ready quotes), as an error.
func lastError(path string, offset int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("the background instance exited (log %s: %v)", path, err)
	}
	defer f.Close()
	_, _ = f.Seek(offset, io.SeekStart)
	var last []string
	continues := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "mattingctl: "):
			last, continues = []string{strings.TrimPrefix(line, "mattingctl: ")}, true
		case continues && strings.HasPrefix(line, "  "):
			last = append(last, line)
		default:
			continues = false
		}
	}
	if len(last) == 0 {
		return fmt.Errorf("the background instance exited before it was ready (see %s)", path)
	}
	return errors.New(strings.Join(last, "\n"))
}

// detachedEnv marks the background copy that Detach starts, which runs the
// same command line (so -d, or detach: true in a config file, is there too).
const detachedEnv = "MATTINGCTL_DETACHED"

// IsDetachedCopy reports whether this process is the background copy of an
// `up -d`, which must run the instance rather than detach again.
func IsDetachedCopy() bool { return os.Getenv(detachedEnv) == "1" }
