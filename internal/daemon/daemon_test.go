package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

const sampleLog = `==> mattingctl up -d -r 2, 2026-11-26T12:00:00Z
12:00:00.100 [INFO]  mattingctl: starting replicas
replica-1 | loading model
replica-2 | loading model
replica-12 | not replica 1
mattingctl: port 9111 for replica-1: already in use
`

func writeLog(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(LogPath(dir, "default"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLogs(t *testing.T) {
	dir := writeLog(t, sampleLog)
	var all strings.Builder
	if err := Logs(context.Background(), &all, dir, "default", 0, false); err != nil || all.String() != sampleLog {
		t.Errorf("all lines: %v\n%s", err, all.String())
	}
	var one strings.Builder
	if err := Logs(context.Background(), &one, dir, "default", 1, false); err != nil || one.String() != "replica-1 | loading model\n" {
		t.Errorf("replica 1's lines: %v %q", err, one.String())
	}
	err := Logs(context.Background(), &one, dir, "other", 0, false)
	if err == nil || !strings.Contains(err.Error(), `no log for instance "other"`) || !strings.Contains(err.Error(), "up -d") {
		t.Errorf("missing log: %v", err)
	}
}

// TestLogsFollow: with follow, a line appended later is printed, and the
// call returns when its context ends.
func TestLogsFollow(t *testing.T) {
	dir := writeLog(t, "first\n")
	ctx, cancel := context.WithCancel(context.Background())
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- Logs(ctx, &out, dir, "default", 0, true) }()
	f, err := os.OpenFile(LogPath(dir, "default"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("sec"); err != nil { // a partial line waits for its end
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // longer than one poll: the partial line must not be printed alone
	if _, err := f.WriteString("ond\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	testutil.WaitFor(t, 5*time.Second, "the appended line", func() bool { return out.String() == "first\nsecond\n" })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Logs after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Logs -f did not return after its context ended")
	}
}

func TestLastError(t *testing.T) {
	dir := writeLog(t, sampleLog)
	path := LogPath(dir, "default")
	if err := lastError(path, 0); err == nil || err.Error() != "port 9111 for replica-1: already in use" {
		t.Errorf("lastError = %v", err)
	}
	// Only lines after the offset count: an earlier run's error is not this one's.
	if err := lastError(path, int64(len(sampleLog))); err == nil || !strings.Contains(err.Error(), "exited before it was ready (see "+path) {
		t.Errorf("lastError past the end = %v", err)
	}
	if err := lastError(filepath.Join(dir, "missing.log"), 0); err == nil || !strings.Contains(err.Error(), "missing.log") {
		t.Errorf("lastError of a missing file = %v", err)
	}
}
