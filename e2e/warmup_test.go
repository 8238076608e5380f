package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// orderEvents reads fakemodel's -order-log: each process's events, in the
// order they happened, as "start GET /path" and "end GET /path".
func orderEvents(t *testing.T, path string) map[int][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	events := map[int][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		pid, event, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil {
			t.Fatalf("order log line %q", line)
		}
		events[n] = append(events[n], event)
	}
	return events
}

func writeWarmup(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "warmup.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWarmupBeforeTraffic: with --warmup and --warmup-count 2 under client
// load from before the replicas start, every process of every replica
// (the first two, one restarted after kill -9, the successors of a rolling
// restart) gets the two warm-up requests, one after the other, before any
// client request reaches it.
func TestWarmupBeforeTraffic(t *testing.T) {
	t.Parallel()
	const warm = "GET /warm?sleep=200ms"
	file := writeWarmup(t, `{"path": "/warm?sleep=200ms", "headers": {"X-Warmup": "1"}}`)
	orderLog := filepath.Join(t.TempDir(), "order.log")
	in := start(t, 2, "--health", "/health", "--warmup", file, "--warmup-count", "2",
		"--", fakemodel, "-order-log", orderLog)
	l := startLoad(in.url("/client?sleep=2ms"), 4) // before the replicas are up
	defer func() {
		if l != nil {
			l.finish()
		}
	}()
	st := in.waitReady(2)

	first := st.Replicas[0].Pid
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "replica-1 restarted and ready", func() bool {
		r := in.status().Replicas[0]
		return r.State == "ready" && r.Pid != first && r.Pid != 0
	})
	before := in.status()
	if _, errOut, code := in.ctl("restart"); code != 0 {
		t.Fatalf("restart: exit %d: %s", code, errOut)
	}
	after := in.status()
	ok, _, _ := l.finish()
	l = nil
	if ok == 0 {
		t.Fatal("no client request was answered")
	}
	if _, errOut, code := in.ctl("down"); code != 0 {
		t.Fatalf("down: exit %d: %s", code, errOut)
	}
	in.wait(30 * time.Second)

	events := orderEvents(t, orderLog)
	pids := []int{first}
	for _, st := range []int{before.Replicas[0].Pid, before.Replicas[1].Pid, after.Replicas[0].Pid, after.Replicas[1].Pid} {
		pids = append(pids, st)
	}
	seen := map[int]bool{}
	for _, pid := range pids {
		if seen[pid] {
			t.Errorf("pid %d twice among the processes %v: no new process", pid, pids)
		}
		seen[pid] = true
	}
	for pid, ev := range events {
		want := []string{"start " + warm, "end " + warm, "start " + warm, "end " + warm}
		if len(ev) < 4 || strings.Join(ev[:4], "|") != strings.Join(want, "|") {
			t.Errorf("process %d: first events %q, want the two warm-ups, one after the other, before anything else", pid, ev[:min(len(ev), 6)])
		}
		if n := strings.Count(strings.Join(ev, "\n"), "start "+warm); n != 2 {
			t.Errorf("process %d: %d warm-ups, want 2", pid, n)
		}
		delete(seen, pid)
	}
	if len(seen) > 0 {
		t.Errorf("processes %v got no request at all", seen)
	}
	if n := strings.Count(in.stderr.String(), "replica warmed up"); n < 5 {
		t.Errorf("%d \"replica warmed up\" lines in the log, want one per process (5)", n)
	}
}

// TestWarmupFailureFailsUp: a warm-up answered 500 keeps the replica out
// of rotation (no client request reaches it) and up fails, naming it and
// the answer; a warm-up file that is not one stops up at once, naming it.
func TestWarmupFailureFailsUp(t *testing.T) {
	t.Parallel()
	file := writeWarmup(t, `{"path": "/warm?status=500"}`)
	orderLog := filepath.Join(t.TempDir(), "order.log")
	in := start(t, 1, "--warmup", file, "--", fakemodel, "-order-log", orderLog)
	l := startLoad(in.url("/client"), 2)
	if code := in.wait(30 * time.Second); code == 0 {
		t.Fatal("up succeeded with a warm-up answered 500")
	}
	l.finish()
	lines := strings.Split(strings.TrimSpace(in.stderr.String()), "\n")
	last := lines[len(lines)-1]
	if want := "replica-1 (port " + strconv.Itoa(in.port+1) + ") failed its warm-up request 1 of 1 (GET /warm?status=500): answered 500 Internal Server Error"; !strings.Contains(last, want) {
		t.Errorf("last line %q, want it to contain %q", last, want)
	}
	for pid, ev := range orderEvents(t, orderLog) {
		for _, e := range ev {
			if !strings.Contains(e, "/warm") {
				t.Errorf("process %d got %q", pid, e)
			}
		}
	}

	bad := writeWarmup(t, `{"path": "/warm", "bdoy": "x"}`)
	_, errOut, code := run(t, t.TempDir(), "up", "--port", strconv.Itoa(testutil.FreePort(t)), "--warmup", bad, "--", fakemodel)
	want := fmt.Sprintf("--warmup %s: unknown field \"bdoy\"", bad)
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, want) {
		t.Errorf("a malformed warm-up file: exit %d, stderr %q, want one line containing %q", code, errOut, want)
	}
}
