//go:build unix

package supervisor

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// failedSlot returns a supervisor with one replica that failed its boot
// and would come up if started again.
func failedSlot(t *testing.T) (*Supervisor, control.ReplicaStatus) {
	t.Helper()
	sl := testSlot(t, "/health", 10*time.Second, CrashBackoff{}, "fail-first", t.TempDir()+"/failed-once")
	st := waitState(t, sl, control.Failed, 10*time.Second)
	return sl.sup, st
}

func TestRollingRestartRevivesFailed(t *testing.T) {
	s, failed := failedSlot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.RollingRestart(ctx)
	if err != nil || res.Error != "" || len(res.Replaced) != 1 || !res.Replaced[0].Revived || len(res.Skipped) != 0 {
		t.Fatalf("rolling restart with a failed replica: %+v, %v", res, err)
	}
	r := s.Status().Replicas
	if len(r) != 1 || r[0].State != control.Ready || r[0].Pid != res.Replaced[0].NewPid || r[0].Restarts != failed.Restarts+1 ||
		r[0].LastRestart != ReasonRolling || r[0].Error != "" {
		t.Fatalf("after the restart: %+v", r)
	}
}

func TestScaleRevivesFailed(t *testing.T) {
	s, _ := failedSlot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.Scale(ctx, 1) // the same count: only the revival
	if err != nil || len(res.Started) != 1 || res.Started[0].State != control.Ready || len(res.Errors) != 0 {
		t.Fatalf("scale with a failed replica: %+v, %v", res, err)
	}
	if r := s.Status().Replicas; len(r) != 1 || r[0].State != control.Ready || r[0].LastRestart != ReasonScale {
		t.Fatalf("after the scale: %+v", r)
	}
}

// TestRestartReplicaThroughTheSocket: `restart --replica K` as the command
// sends it: only that replica gets a new process; a replica that does not
// exist and malformed requests are refused.
func TestRestartReplicaThroughTheSocket(t *testing.T) {
	var opts Options
	s := newTestSupervisor(t, func(o *Options) {
		o.Replicas, o.Health, o.Host, o.Admin, o.Name = 2, "/health", "127.0.0.1", "none", "restart-one"
		opts = *o
	}, "serve")
	go func() { _ = s.Run(context.Background()) }()
	var c *control.Client
	var before control.Status
	testutil.WaitFor(t, 20*time.Second, "the instance to be ready", func() bool {
		var err error
		if c == nil {
			if c, err = control.Connect(opts.StateDir, opts.Name); err != nil {
				return false
			}
		}
		before, err = c.Status(context.Background())
		return err == nil && before.Ready() == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.RestartReplica(ctx, 2)
	if err != nil || res.Error != "" || len(res.Replaced) != 1 || res.Replaced[0].Name != "replica-2" || res.Replaced[0].OldPid != before.Replicas[1].Pid {
		t.Fatalf("restart --replica 2: %+v, %v", res, err)
	}
	after, _ := c.Status(ctx)
	if after.Replicas[0].Pid != before.Replicas[0].Pid || after.Replicas[1].Pid == before.Replicas[1].Pid ||
		after.Replicas[1].LastRestart != ReasonRestart || after.Replicas[1].State != control.Ready {
		t.Fatalf("after restart --replica 2: %+v (before %+v)", after.Replicas, before.Replicas)
	}
	if _, err := c.RestartReplica(ctx, 3); err == nil || !strings.Contains(err.Error(), "there is no replica-3: the instance has 2 replicas") {
		t.Errorf("restart --replica 3 of 2: %v", err)
	}

	raw := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", control.SocketPath(opts.StateDir, opts.Name))
	}}}
	for _, body := range []string{`{"replica": 1, "force": true}`, `{"replica": 0}`, `{"replica": "1"}`, `[1]`} {
		resp, err := raw.Post("http://mattingctl/v1/restart", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("restart with body %s: %d, want 400", body, resp.StatusCode)
		}
	}
	if st, _ := c.Status(ctx); st.Replicas[0].Pid != before.Replicas[0].Pid {
		t.Errorf("a refused request restarted replica-1: pid %d -> %d", before.Replicas[0].Pid, st.Replicas[0].Pid)
	}
}
