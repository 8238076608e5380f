package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// accessLine is a JSON access log line, every documented field.
type accessLine struct {
	Time       string  `json:"time"`
	Client     string  `json:"client"`
	Method     string  `json:"method"`
	Path       string  `json:"path"`
	Protocol   string  `json:"protocol"`
	Status     int     `json:"status"`
	BytesIn    int64   `json:"bytes_in"`
	BytesOut   int64   `json:"bytes_out"`
	DurationMs float64 `json:"duration_ms"`
	Replica    string  `json:"replica"`
	Attempts   int     `json:"attempts"`
	QueuedMs   float64 `json:"queued_ms"`
	Referer    string  `json:"referer"`
	UserAgent  string  `json:"user_agent"`
}

// accessLines parses the JSON access log at path, failing t on a line
// that does not parse or lacks a field.
func accessLines(t *testing.T, path string) map[string]accessLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := map[string]accessLine{}
	for _, raw := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatalf("access log line does not parse: %v\n%s", err, raw)
		}
		if len(fields) != 14 {
			t.Errorf("access log line has %d fields, want 14: %s", len(fields), raw)
		}
		var l accessLine
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("access log line: %v\n%s", err, raw)
		}
		lines[l.Path] = l
	}
	return lines
}

// waitLine waits for the line of the request for path.
func waitLine(t *testing.T, file, path string) accessLine {
	t.Helper()
	var l accessLine
	testutil.WaitFor(t, 10*time.Second, "the access log line of "+path, func() bool {
		var ok bool
		l, ok = accessLines(t, file)[path]
		return ok
	})
	return l
}

// TestAccessLogJSON: with --access-log FILE --access-log-format json, an
// ordinary request's line has one attempt; a request whose replica is
// killed under it, retried on the other, has the replica that answered
// and 2 attempts; a 503 rejection has its status and no replica; and
// SIGHUP reopens the file after logrotate moved it.
func TestAccessLogJSON(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "access.log")
	in := start(t, 2, "--access-log", file, "--access-log-format", "json",
		"--max-inflight", "1", "--queue", "0", "--", fakemodel)
	in.waitReady(2)

	r, err := get(in.url("/plain?x=1"))
	if err != nil {
		t.Fatal(err)
	}
	l := waitLine(t, file, "/plain?x=1")
	if l.Status != 200 || l.Attempts != 1 || l.Replica != fmt.Sprintf("replica-%d", r.Replica) || l.Method != "GET" ||
		l.Protocol != "HTTP/1.1" || l.Client != "127.0.0.1" || l.BytesOut == 0 || l.DurationMs <= 0 {
		t.Errorf("ordinary request: %+v (answered by replica-%d)", l, r.Replica)
	}
	if _, err := time.Parse(time.RFC3339, l.Time); err != nil {
		t.Errorf("time %q: %v", l.Time, err)
	}

	// Both replicas busy, no queue: 503.
	var held sync.WaitGroup
	for i := range 2 {
		held.Add(1)
		go func() {
			defer held.Done()
			if _, err := get(in.url("/held?sleep=4s&n=" + strconv.Itoa(i))); err != nil {
				t.Error(err)
			}
		}()
	}
	in.waitInflight(2)
	resp, err := client.Get(in.url("/rejected"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("with both replicas busy and no queue: %d, want 503", resp.StatusCode)
	}
	l = waitLine(t, file, "/rejected")
	if l.Status != 503 || l.Replica != "-" || l.Attempts != 0 {
		t.Errorf("rejected request: %+v; want 503, replica -, 0 attempts", l)
	}
	held.Wait()

	// kill -9 of the replica serving a request: it is retried on the other.
	done := make(chan reply, 1)
	go func() {
		r, err := get(in.url("/retried?sleep=3s"))
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	in.waitInflight(1)
	victim := 0
	for _, rs := range in.status().Replicas {
		if rs.Inflight == 1 {
			victim = rs.Pid
		}
	}
	if victim == 0 { // kill(0) would signal the test's own process group
		t.Fatal("no replica holds the request any more")
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r = <-done
	if r.Pid == victim || r.Pid == 0 {
		t.Fatalf("answered by %+v, the killed pid %d", r, victim)
	}
	l = waitLine(t, file, "/retried?sleep=3s")
	if l.Status != 200 || l.Attempts != 2 || l.Replica != fmt.Sprintf("replica-%d", r.Replica) {
		t.Errorf("retried request: %+v; want 200, 2 attempts, replica-%d", l, r.Replica)
	}
	if st := in.status(); st.Retried != 1 {
		t.Errorf("status says %d retried, want 1", st.Retried)
	}

	// logrotate: move the file, then SIGUSR1, which reopens the log and
	// restarts no replica (SIGHUP would also reload the config file).
	before := pidsOf(in.status())
	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	if err := in.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the access log reopened", func() bool {
		return strings.Contains(in.stderr.String(), "access log reopened")
	})
	testutil.WaitFor(t, 20*time.Second, "a request after the reopen answered", func() bool {
		_, err := get(in.url("/after-rotation"))
		return err == nil
	})
	waitLine(t, file, "/after-rotation")
	if _, ok := accessLines(t, file+".1")["/after-rotation"]; ok {
		t.Error("a line went to the rotated file after SIGUSR1")
	}
	if after := pidsOf(in.status()); !slices.Equal(before, after) {
		t.Errorf("SIGUSR1 restarted replicas: pids %v, then %v", before, after)
	}
}

// pidsOf lists the replicas' pids, by replica.
func pidsOf(st control.Status) []int {
	var pids []int
	for _, r := range st.Replicas {
		pids = append(pids, r.Pid)
	}
	return pids
}

// TestAccessLogStdout: with --access-log -, combined lines go to
// mattingctl's stdout.
func TestAccessLogStdout(t *testing.T) {
	t.Parallel()
	in := start(t, 1, "--access-log", "-", "--", fakemodel)
	in.waitReady(1)
	req, _ := http.NewRequest("GET", in.url("/hello?a=b"), nil)
	req.Header.Set("User-Agent", "e2e-agent")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testutil.WaitFor(t, 10*time.Second, "the access log line on stdout", func() bool {
		return strings.Contains(in.stdout.String(), `"GET /hello?a=b HTTP/1.1" 200 `)
	})
	for _, line := range strings.Split(in.stdout.String(), "\n") {
		if strings.Contains(line, "/hello?a=b") {
			if !strings.HasPrefix(line, "127.0.0.1 - - [") || !strings.Contains(line, `"-" "e2e-agent" 0 `) || !strings.Contains(line, " replica-1 1 ") {
				t.Errorf("line %q", line)
			}
		}
	}
}
