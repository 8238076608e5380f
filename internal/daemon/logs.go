package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// LogsOptions say which log `mattingctl logs` prints, and how.
type LogsOptions struct {
	// Dir is the state directory; empty means control.StateDir().
	Dir  string
	Name string
	// Replica, when more than 0, keeps only replica K's lines: its output
	// and mattingctl's lines that name it.
	Replica int
	// Service, when not empty, keeps only that service's lines, of an
	// instance of several (its replica Replica's only, when more than 0).
	Service string
	// Follow waits for more lines, until ctx ends or the instance stops.
	Follow bool
	// Running reports whether the instance still runs; nil means asking
	// for its pid over the control socket once and watching that process.
	Running func() bool
}

// LogsEnd says why Logs returned.
type LogsEnd int

// The ways Logs ends without an error.
const (
	// EndOfLog: without Follow, the log has been printed.
	EndOfLog LogsEnd = iota
	// Interrupted: with Follow, ctx ended.
	Interrupted
	// Stopped: with Follow, the instance has stopped, and every line it
	// wrote has been printed.
	Stopped
	// NotRunning: with Follow, the instance was not running; the log has
	// been printed.
	NotRunning
)

// followPoll is how often Logs, following, looks for new lines and
// checks that the instance runs.
const followPoll = 200 * time.Millisecond

// Logs writes the instance's log to w: every line, or only replica K's.
// With Follow it then waits for more until ctx ends or the instance
// stops; then it prints what the instance wrote last and returns Stopped.
func Logs(ctx context.Context, w io.Writer, opts LogsOptions) (LogsEnd, error) {
	dir := opts.Dir
	if dir == "" {
		d, err := control.StateDir()
		if err != nil {
			return EndOfLog, err
		}
		dir = d
	}
	path := LogPath(dir, opts.Name)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return EndOfLog, fmt.Errorf("no log for instance %q at %s: logs are kept for instances started with `mattingctl up -d`", opts.Name, path)
		}
		return EndOfLog, err
	}
	defer f.Close()
	running := opts.Running
	if opts.Follow && running == nil {
		running = instanceRunning(dir, opts.Name)
	}
	keep := func([]byte) bool { return true }
	if opts.Replica > 0 || opts.Service != "" {
		keep = newReplicaFilter(opts.Service, opts.Replica).match
	}
	r := bufio.NewReader(f)
	var partial []byte
	// copyAll writes every whole line there is now; a partial line waits
	// for its end.
	copyAll := func() error {
		for {
			line, err := r.ReadBytes('\n')
			partial = append(partial, line...)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if keep(partial) {
				if _, err := w.Write(partial); err != nil {
					return err
				}
			}
			partial = partial[:0]
		}
	}
	// Checked before each read: once it has stopped, the instance writes
	// nothing more, so the read after the check that finds it stopped has
	// every line.
	up := opts.Follow && running()
	if err := copyAll(); err != nil || !opts.Follow {
		return EndOfLog, err
	}
	end := NotRunning
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		if !up {
			if len(partial) > 0 && keep(partial) { // its last line, cut short
				if _, err := w.Write(append(partial, '\n')); err != nil {
					return end, err
				}
			}
			return end, nil
		}
		end = Stopped
		select {
		case <-ctx.Done():
			return Interrupted, nil
		case <-t.C:
		}
		up = running()
		if err := copyAll(); err != nil {
			return end, err
		}
	}
}

// instanceRunning returns a function reporting whether the instance
// called name runs: the process whose pid its control socket gives now.
// An instance that does not answer now is not running.
func instanceRunning(dir, name string) func() bool {
	c, err := control.Connect(dir, name)
	if err != nil {
		return func() bool { return false }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil || st.Pid <= 0 {
		return func() bool { return false }
	}
	return processRunning(st.Pid)
}
