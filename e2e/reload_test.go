package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestReloadUnderLoad: under a closed loop of clients, `set` changes the
// proxy's limit, queue timeout and policy live, and `reload` of an edited
// -f file rolls a changed command through the replicas one at a time: no
// request fails, status shows every change, and each replica's pid
// changes, in turn, with never fewer than three ready.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "mattingctl.yaml")
	writeFile(t, file, fmt.Sprintf("health: /health\ncommand: [%s]\n", fakemodel))
	in := start(t, 3, "-f", file)
	before := in.waitReady(3)
	if before.Settings["max-inflight"] != "auto" || before.Policy != "least_conn" {
		t.Fatalf("settings at start: %v, policy %s", before.Settings, before.Policy)
	}

	const total = 2000
	l := startClosedLoop(in.url("/?sleep=5ms"), 6, total)
	out, errOut, code := in.ctl("set", "max-inflight=2", "queue-timeout=1m", "policy=round_robin")
	if code != 0 {
		t.Fatalf("set: exit %d\n%s%s", code, out, errOut)
	}
	for _, line := range []string{"policy least_conn → round_robin\n", "max-inflight auto → 2\n", "queue-timeout auto → 1m\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("set printed\n%s\nwithout %q", out, line)
		}
	}
	st := in.status()
	if st.Policy != "round_robin" || st.AdaptiveInflight != nil || st.MaxInflight != 2 || st.Settings["queue-timeout"] != "1m" ||
		st.Changed["max-inflight"] != "2" || st.ChangedBy != "set" {
		t.Errorf("status after set: policy %s, max_inflight %d, adaptive %v, settings %v, changed %v by %q",
			st.Policy, st.MaxInflight, st.AdaptiveInflight, st.Settings, st.Changed, st.ChangedBy)
	}
	for _, r := range st.Replicas {
		if r.Limit != 2 {
			t.Errorf("%s: limit %d after max-inflight=2", r.Name, r.Limit)
		}
	}
	if human, _, _ := in.ctl("status"); !strings.Contains(human, "timeout 1m") || !strings.Contains(human, "max-inflight 2") {
		t.Errorf("status does not show the queue timeout and the change:\n%s", human)
	}

	// The settings found good go into the file, with a new command.
	writeFile(t, file, fmt.Sprintf("health: /health\nmax-inflight: 2\nqueue-timeout: 1m\npolicy: round_robin\ncommand: [%s, -service, 1ms]\n", fakemodel))
	var (
		mu        sync.Mutex
		changedAt = map[string]time.Time{}
		fewest    = 3
		watching  = make(chan struct{})
		watched   = make(chan struct{})
	)
	go func() { // every pid change, and the ready replicas, as the reload rolls
		defer close(watched)
		for {
			select {
			case <-watching:
				return
			case <-time.After(20 * time.Millisecond):
			}
			s, err := in.tryStatus()
			if err != nil {
				continue
			}
			ready := 0
			mu.Lock()
			for i, r := range s.Replicas {
				if r.State == control.Ready {
					ready++
				}
				if i < len(before.Replicas) && r.Pid != 0 && r.Pid != before.Replicas[i].Pid && changedAt[r.Name].IsZero() {
					changedAt[r.Name] = time.Now()
				}
			}
			fewest = min(fewest, ready)
			mu.Unlock()
		}
	}()
	out, errOut, code = in.ctl("reload")
	close(watching)
	<-watched
	ok, failures := l.finish()
	if code != 0 {
		t.Fatalf("reload: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.HasPrefix(out, "command changed: rolling restart\n") || strings.Contains(out, "max-inflight") {
		t.Errorf("reload printed\n%s\nwant the command change alone: the file now holds what set set", out)
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during set and reload; first: %s", len(failures), ok+len(failures), failures[0])
	}
	if ok < total {
		t.Errorf("%d requests served, want %d", ok, total)
	}
	after := in.status()
	if !reflect.DeepEqual(after.Command, []string{fakemodel, "-service", "1ms"}) || after.Policy != "round_robin" ||
		after.MaxInflight != 2 || after.Settings["queue-timeout"] != "1m" || after.ChangedBy != "reload" {
		t.Errorf("status after reload: command %q, policy %s, max_inflight %d, settings %v, by %q", after.Command, after.Policy, after.MaxInflight, after.Settings, after.ChangedBy)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, r := range after.Replicas {
		old := before.Replicas[i]
		if r.Pid == old.Pid || r.LastRestart != "rolling restart" {
			t.Errorf("%s after the reload: pid %d (was %d), last restart %q", r.Name, r.Pid, old.Pid, r.LastRestart)
		}
		if i > 0 && !changedAt[r.Name].After(changedAt[before.Replicas[i-1].Name]) {
			t.Errorf("%s's pid changed at %v, not after %s's at %v: not one at a time", r.Name, changedAt[r.Name], before.Replicas[i-1].Name, changedAt[before.Replicas[i-1].Name])
		}
	}
	if fewest < 3 {
		t.Errorf("only %d replicas were ready at one point of the reload's rolling restart", fewest)
	}
	t.Logf("%d requests, none failed; reload printed:\n%s", ok, out)
}

// TestReloadRefusals: a setting that cannot change live, a file with a
// syntax error and an instance without -f are each refused with one line
// naming what, exit 1, and nothing changes; SIGHUP reloads the file.
func TestReloadRefusals(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "m.yaml")
	writeFile(t, file, fmt.Sprintf("queue: 100\ncommand: [%s]\n", fakemodel))
	in := start(t, 2, "-f", file)
	before := in.waitReady(2)

	out, errOut, code := in.ctl("set", "port=9200", "queue=5")
	if code != 1 || out != "" || !strings.Contains(errOut, "port cannot change while the instance runs") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("set port=9200: exit %d, stdout %q, stderr %q; want exit 1 and one line naming port", code, out, errOut)
	}
	if st := in.status(); st.Port != before.Port || st.QueueMax != 100 || !reflect.DeepEqual(st.Settings, before.Settings) {
		t.Errorf("a refused set changed something: port %d, queue %d", st.Port, st.QueueMax)
	}

	writeFile(t, file, "queue: [100\n")
	out, errOut, code = in.ctl("reload")
	if code != 1 || out != "" || !strings.Contains(errOut, file+":") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("reload of a broken file: exit %d, stdout %q, stderr %q; want exit 1 and one line naming the file", code, out, errOut)
	}
	if st := in.status(); !reflect.DeepEqual(st.Settings, before.Settings) || st.Changed != nil {
		t.Errorf("a broken file changed settings: %v", st.Changed)
	}

	// SIGHUP: the file read again, the change applied live.
	writeFile(t, file, fmt.Sprintf("queue: 77\ncommand: [%s]\n", fakemodel))
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "SIGHUP to apply queue 77", func() bool { return in.status().QueueMax == 77 })
	for i, r := range in.status().Replicas {
		if r.Pid != before.Replicas[i].Pid {
			t.Errorf("%s restarted (pid %d, was %d) for a queue change", r.Name, r.Pid, before.Replicas[i].Pid)
		}
	}

	// Without -f there is nothing to read again.
	bare := start(t, 1, "--", fakemodel)
	bare.waitReady(1)
	out, errOut, code = bare.ctl("reload")
	if code != 1 || out != "" || !strings.Contains(errOut, "without -f") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("reload without -f: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Written aside and renamed, as editors do: a reload never reads half.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// closedLoop is c clients each sending a request as soon as its last is
// answered, until total have been sent and finish is called.
type closedLoop struct {
	sent     atomic.Int64
	total    int64
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	ok       int
	failures []string
}

func startClosedLoop(url string, c, total int) *closedLoop {
	l := &closedLoop{total: int64(total), stop: make(chan struct{})}
	for range c {
		l.wg.Go(func() {
			for {
				// Past total, only until finish: the load lasts as long
				// as what it is for.
				if l.sent.Add(1) > l.total {
					select {
					case <-l.stop:
						return
					default:
					}
				}
				_, err := get(url)
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, err.Error())
				} else {
					l.ok++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// finish waits for the total to be sent and answered, then stops.
func (l *closedLoop) finish() (ok int, failures []string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok, l.failures
}
