package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	if end, err := Logs(context.Background(), &all, LogsOptions{Dir: dir, Name: "default"}); err != nil || end != EndOfLog || all.String() != sampleLog {
		t.Errorf("all lines: %v %v\n%s", end, err, all.String())
	}
	var one strings.Builder
	want := "replica-1 | loading model\nmattingctl: port 9111 for replica-1: already in use\n"
	if _, err := Logs(context.Background(), &one, LogsOptions{Dir: dir, Name: "default", Replica: 1}); err != nil || one.String() != want {
		t.Errorf("replica 1's lines: %v %q", err, one.String())
	}
	_, err := Logs(context.Background(), &one, LogsOptions{Dir: dir, Name: "other"})
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
	go func() {
		_, err := Logs(ctx, &out, LogsOptions{Dir: dir, Name: "default", Follow: true, Running: func() bool { return true }})
		done <- err
	}()
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

// TestLogsReplicaLines: --replica K keeps replica K's output and
// mattingctl's lines that name it, in text or JSON, and nothing about
// another replica, even one whose output names K.
func TestLogsReplicaLines(t *testing.T) {
	tests := []struct {
		line string
		keep bool
	}{
		{"replica-2 | loading model", true},
		{"replica-2  | padded to replica-12's width", true},
		{"replica-2| no space", true},
		{"replica-1 | asking replica-2 for its part", false},
		{"replica-12 | loading model", false},
		{"replica-20 | loading model", false},
		{"06:44:49 [INFO]  mattingctl: replica ready: replica=replica-2 pid=7009 port=19312", true},
		{"06:44:49 [WARN]  mattingctl: replica exited; restarting: replica=replica-2 pid=7009 exit=\"exit code 1\" restart_in=1s", true},
		{"06:44:49 [INFO]  mattingctl: restarting one replica: replica=replica-2", true},
		{"06:44:49 [INFO]  mattingctl: replica ready: replica=replica-20 pid=7009 port=19312", false},
		{"06:44:49 [INFO]  mattingctl: replica ready: replica=replica-1 pid=7009 port=19312", false},
		{"06:44:49 [INFO]  mattingctl.proxy: replica did not answer: replica=replica-2 method=POST path=/predict", true},
		{`{"@level":"info","@message":"replica ready","@module":"mattingctl","replica":"replica-2","pid":7009}`, true},
		{`{"@level":"info","@message":"replica ready","@module":"mattingctl","replica":"replica-21","pid":7009}`, false},
		{"mattingctl: port 9112 for replica-2: already in use", true},
		{"06:44:49 [INFO]  mattingctl: scaling: from=2 to=3", false},
		{"06:44:49 [INFO]  mattingctl: ready: proxy=http://127.0.0.1:9110/ replicas=2", false},
		{"==> mattingctl up -d -r 2, 2026-11-26T12:00:00Z", false},
	}
	f := newReplicaFilter("", 2)
	for _, tt := range tests {
		if got := f.match([]byte(tt.line + "\n")); got != tt.keep {
			t.Errorf("%q: kept %v, want %v", tt.line, got, tt.keep)
		}
	}
}

// TestServiceFilter: logs --service m keeps m's replicas' output and the
// lines about m, in text and JSON, and not those of another service whose
// name starts the same, nor the instance's own.
func TestServiceFilter(t *testing.T) {
	tests := []struct {
		line string
		keep bool
	}{
		{"m-1    | loading model", true},
		{"m-12   | loading model", true},
		{"m-v2-1 | loading model", false},
		{"replica-1 | loading model", false},
		{"06:44:49 [INFO]  mattingctl: starting replicas: service=m replicas=3", true},
		{"06:44:49 [INFO]  mattingctl: starting replicas: service=m-v2 replicas=3", false},
		{"06:44:49 [INFO]  mattingctl: replica ready: replica=m-1 service=m", true},
		{`{"@level":"info","@message":"replica ready","replica":"m-1","service":"m"}`, true},
		{`{"@level":"info","@message":"replica ready","replica":"m-v2-1","service":"m-v2"}`, false},
		{"06:44:49 [INFO]  mattingctl: ready: proxy=http://127.0.0.1:9110/ services=2", false},
	}
	f := newReplicaFilter("m", 0)
	for _, tt := range tests {
		if got := f.match([]byte(tt.line + "\n")); got != tt.keep {
			t.Errorf("%q: kept %v, want %v", tt.line, got, tt.keep)
		}
	}
	if one := newReplicaFilter("m", 1); !one.match([]byte("m-1 | x\n")) || one.match([]byte("m-12 | x\n")) {
		t.Error("--service m --replica 1 does not keep m-1's lines alone")
	}
}

// TestLogsFollowEndsWhenTheInstanceStops: following ends once the
// instance stops, after printing what it wrote last, even a last line cut
// short; and it ends at once, after the log, for an instance that is not
// running.
func TestLogsFollowEndsWhenTheInstanceStops(t *testing.T) {
	dir := writeLog(t, "first\n")
	var running atomic.Bool
	running.Store(true)
	var out testutil.SyncBuffer
	type result struct {
		end LogsEnd
		err error
	}
	done := make(chan result, 1)
	go func() {
		end, err := Logs(context.Background(), &out, LogsOptions{Dir: dir, Name: "default", Follow: true, Running: running.Load})
		done <- result{end, err}
	}()
	testutil.WaitFor(t, 5*time.Second, "the first line", func() bool { return out.String() == "first\n" })
	f, err := os.OpenFile(LogPath(dir, "default"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The instance's last words, written just before it exits.
	if _, err := f.WriteString("stopped\ncut sh"); err != nil {
		t.Fatal(err)
	}
	running.Store(false)
	select {
	case r := <-done:
		if r.err != nil || r.end != Stopped || out.String() != "first\nstopped\ncut sh\n" {
			t.Errorf("Logs -f after the instance stopped: %v %v, printed %q", r.end, r.err, out.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Logs -f did not return after the instance stopped")
	}

	var again strings.Builder
	end, err := Logs(context.Background(), &again, LogsOptions{Dir: dir, Name: "default", Follow: true, Running: running.Load})
	if err != nil || end != NotRunning || again.String() != "first\nstopped\ncut sh\n" {
		t.Errorf("Logs -f of a stopped instance: %v %v, printed %q", end, err, again.String())
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
