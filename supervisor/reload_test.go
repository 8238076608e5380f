package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// fakeSource is a Source whose file is lines of KEY=VALUE, among queue,
// policy and port, with sets of the same form over it.
func fakeSource(t *testing.T, base Options, file string) *Source {
	content, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return &Source{
		File:    file,
		Content: content,
		Fixed:   map[string]string{"log-level": "info"},
		Load: func(content []byte, sets []string) (Options, map[string]string, error) {
			o := base
			fixed := map[string]string{"log-level": "info"}
			lines := strings.Fields(string(content))
			for i, kv := range append(lines, sets...) {
				k, v, _ := strings.Cut(kv, "=")
				n, err := strconv.Atoi(v)
				switch {
				case k == "queue" && err == nil:
					o.Queue = n
				case k == "port" && err == nil:
					o.Port = n
				case k == "policy":
					o.Policy = v
				case k == "health":
					o.Health = v
				case k == "max-inflight" && err == nil:
					o.MaxInflight = n
				case k == "log-level":
					fixed[k] = v
				case i < len(lines):
					return Options{}, nil, fmt.Errorf("%s: line %d: %s: not a setting", file, i+1, k)
				default:
					return Options{}, nil, fmt.Errorf("%s: not a setting", kv)
				}
			}
			return o, fixed, nil
		},
	}
}

// TestReconfigure: set and reload change what they name, live, and say
// so in status; a refused or broken change changes nothing; the reload
// hook is told of the start and the end of each, applied or not.
func TestReconfigure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.conf")
	if err := os.WriteFile(file, []byte("queue=10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var phases []string
	s := newTestSupervisor(t, func(o *Options) {
		o.Queue = 10
		o.Source = fakeSource(t, *o, file)
		o.OnReload = func(p string) { phases = append(phases, p) }
	}, "serve")
	ctx := context.Background()

	res, err := s.Set(ctx, []string{"queue=5", "policy=round_robin"})
	if err != nil || len(res.Changes) != 2 {
		t.Fatalf("set: %+v, %v", res, err)
	}
	if c := s.cfg(); c.Queue != 5 || c.Policy != "round_robin" || s.bal.Stats().Queued != 0 {
		t.Errorf("after set: queue %d, policy %s", c.Queue, c.Policy)
	}
	st := s.Status()
	if st.QueueMax != 5 || st.Policy != "round_robin" || st.Settings["queue"] != "5" ||
		st.Changed["queue"] != "5" || st.Changed["policy"] != "round_robin" || st.ChangedBy != "set" {
		t.Errorf("status after set: queue max %d, policy %s, settings %v, changed %v by %q", st.QueueMax, st.Policy, st.Settings["queue"], st.Changed, st.ChangedBy)
	}
	if !slices.Equal(phases, []string{ReloadStarted, ReloadDone}) {
		t.Errorf("hook phases %v", phases)
	}

	// Refused: port cannot change, and the queue set with it is not set.
	_, err = s.Set(ctx, []string{"queue=7", "port=1", "log-level=debug"})
	var refused *RefusedError
	if !errors.As(err, &refused) || !slices.Equal(refused.Settings, []string{"port", "log-level"}) {
		t.Errorf("set port: %v, want port and log-level refused", err)
	}
	if s.cfg().Queue != 5 || s.cfg().Port == 1 {
		t.Errorf("a refused set changed the queue to %d", s.cfg().Queue)
	}
	if _, err := s.Set(ctx, []string{"nosuch=1"}); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("an unknown setting: %v", err)
	}
	// Past the in-flight cap the open-file budget was planned for (auto's 64).
	if _, err := s.Set(ctx, []string{"max-inflight=65"}); err == nil || !strings.Contains(err.Error(), "max-inflight 65: more in flight per replica than the 64") {
		t.Errorf("max-inflight above the plan: %v", err)
	}
	if s.cfg().MaxInflight != 0 || !s.cfg().Adaptive() {
		t.Errorf("a refused max-inflight changed the cap to %d", s.cfg().MaxInflight)
	}
	res, err = s.Set(ctx, []string{"queue=5"})
	if err != nil || len(res.Changes) != 0 {
		t.Errorf("setting what is in force: %+v, %v", res, err)
	}
	if len(phases) != 10 {
		t.Errorf("the hook was told of %d phases of 5 sets: %v", len(phases), phases)
	}

	// A file with an error changes nothing, naming the file and line.
	if err := os.WriteFile(file, []byte("queue=8\nqueu=9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(ctx); err == nil || !strings.Contains(err.Error(), file+": line 2") {
		t.Errorf("reload of a broken file: %v", err)
	}
	if s.cfg().Queue != 5 {
		t.Errorf("a broken file changed the queue to %d", s.cfg().Queue)
	}
	// The file is the truth: the settings set before are dropped.
	if err := os.WriteFile(file, []byte("queue=8\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = s.Reload(ctx)
	if err != nil || res.File != file || len(res.Changes) != 2 {
		t.Fatalf("reload: %+v, %v", res, err)
	}
	if c := s.cfg(); c.Queue != 8 || c.Policy != "least_conn" {
		t.Errorf("after reload: queue %d, policy %s; want the file's 8 and up's least_conn", c.Queue, c.Policy)
	}
	if st := s.Status(); st.Changed["queue"] != "8" || st.Changed["policy"] != "" || st.ChangedBy != "reload" {
		t.Errorf("status after reload: changed %v by %s; policy is back to its start value", st.Changed, st.ChangedBy)
	}
}

// TestReloadWithoutFile: an instance started without -f has nothing to
// read again, and says so.
func TestReloadWithoutFile(t *testing.T) {
	s := newTestSupervisor(t, func(o *Options) {
		o.Source = &Source{Load: func([]byte, []string) (Options, map[string]string, error) { return *o, nil, nil }}
	}, "serve")
	if _, err := s.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "without -f") {
		t.Errorf("reload without -f: %v", err)
	}
	s = newTestSupervisor(t, func(*Options) {}, "serve")
	if _, err := s.Set(context.Background(), []string{"queue=1"}); !errors.Is(err, errNoSource) {
		t.Errorf("set without a source: %v", err)
	}
}

// TestHealthChangeReachesOldReplicasByTheRestart: a changed --health path
// is checked on each replica's new process; the old processes are still
// checked on the path they started with, so a path they do not serve
// takes none of them out of rotation while the rolling restart (which
// here fails: the new path answers 500) has not replaced them.
func TestHealthChangeReachesOldReplicasByTheRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.conf")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startTestSupervisor(t, 2, func(o *Options) {
		o.Health = "/health"
		fastLiveness(time.Minute)(o)
		o.ReadyTimeout = 2 * time.Second
		o.Source = fakeSource(t, *o, file)
	}, "serve")
	before := s.Status()
	res, err := s.Set(context.Background(), []string{"health=/fail"})
	if err != nil || res.Restart == nil || res.Restart.Error == "" {
		t.Fatalf("set health=/fail: %+v, %v; want the rolling restart to stop at a new process that is never ready", res, err)
	}
	// Liveness checks every 50 ms, unhealthy after 2 failures: a second
	// is ample for the old processes to be taken out, were they checked
	// on /fail.
	time.Sleep(time.Second)
	for i, r := range s.Status().Replicas {
		if r.Pid != before.Replicas[i].Pid || r.State != control.Ready {
			t.Errorf("%s: pid %d (was %d), state %s; want the old process, ready", r.Name, r.Pid, before.Replicas[i].Pid, r.State)
		}
	}
}
