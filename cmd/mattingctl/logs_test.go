package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestLogsFollowEnds: logs -f exits 0 once the instance stops, saying so
// on stderr after the log, and at once for an instance not running.
func TestLogsFollowEnds(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.log"), []byte("replica-1 | hello\nreplica-2 | hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(running func() bool, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		f := &factory{Out: &out, ErrOut: &errOut}
		root := newRootCmd(f, runFuncs{logs: func(o *logsOptions) error {
			o.Dir, o.Running = dir, running
			return logsRun(o)
		}})
		root.SetArgs(append([]string{"logs", "--name", "web"}, args...))
		err := root.Execute()
		return out.String(), errOut.String(), err
	}
	var calls atomic.Int32
	stopsSoon := func() bool { return calls.Add(1) < 3 } // running for two checks
	out, errOut, err := run(stopsSoon, "-f", "--replica", "2")
	if err != nil || out != "replica-2 | hi\n" || errOut != "instance web stopped\n" {
		t.Errorf("logs -f of an instance that stops: %v, printed %q and %q", err, out, errOut)
	}
	out, errOut, err = run(func() bool { return false }, "-f")
	if err != nil || out != "replica-1 | hello\nreplica-2 | hi\n" || errOut != "instance web is not running: nothing more to follow\n" {
		t.Errorf("logs -f of an instance not running: %v, printed %q and %q", err, out, errOut)
	}
	out, errOut, err = run(nil)
	if err != nil || out != "replica-1 | hello\nreplica-2 | hi\n" || errOut != "" {
		t.Errorf("logs: %v, printed %q and %q", err, out, errOut)
	}
}
