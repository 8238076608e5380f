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
	"path/filepath"
	"strings"
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
}

// Detach starts `mattingctl ARGS` in the background, in a session of its
// own, with its output appended to the instance's log file, and returns
// once every replica is ready. If the instance exits first, the error is
// its own last error line; if it is not ready in time, it is stopped.
// Either way nothing is left running.
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

	cmd := exec.Command(self, opts.Args...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+dir, detachedEnv+"=1")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = detachAttr()
	if err := cmd.Start(); err != nil {
		return control.Status{}, fmt.Errorf("starting the background instance: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(opts.Wait)
	for {
		select {
		case <-exited:
			return control.Status{}, lastError(logPath, start)
		case <-time.After(200 * time.Millisecond):
		}
		if st, ok := readyStatus(dir, opts.Name); ok {
			return st, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(time.Minute):
				_ = cmd.Process.Kill()
				<-exited
			}
			return control.Status{}, fmt.Errorf("instance %q was not ready within %s; stopped it (see %s)", opts.Name, opts.Wait, logPath)
		}
	}
}

// readyStatus reports the instance's status once every replica is ready.
func readyStatus(dir, name string) (control.Status, bool) {
	c, err := control.Connect(dir, name)
	if err != nil {
		return control.Status{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil || len(st.Replicas) != st.Desired {
		return control.Status{}, false
	}
	for _, r := range st.Replicas {
		if r.State != control.Ready {
			return control.Status{}, false
		}
	}
	return st, true
}

// lastError returns the last "mattingctl: " line the instance wrote to its
// log after offset, as an error.
func lastError(path string, offset int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("the background instance exited (log %s: %v)", path, err)
	}
	defer f.Close()
	_, _ = f.Seek(offset, io.SeekStart)
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "mattingctl: ") {
			last = strings.TrimPrefix(line, "mattingctl: ")
		}
	}
	if last == "" {
		return fmt.Errorf("the background instance exited before it was ready (see %s)", path)
	}
	return errors.New(last)
}

// detachedEnv marks the background copy that Detach starts, which runs the
// same command line (so -d, or detach: true in a config file, is there too).
const detachedEnv = "MATTINGCTL_DETACHED"

// IsDetachedCopy reports whether this process is the background copy of an
// `up -d`, which must run the instance rather than detach again.
func IsDetachedCopy() bool { return os.Getenv(detachedEnv) == "1" }
