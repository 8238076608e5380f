package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestIdleConnectionsLeaveRoomForStatusAndRestarts is the file-descriptor attack on
// file descriptors, scaled down: at `ulimit -n 20000`, 20,000 idle client
// connections made status time out and a killed replica unrestartable.
// Here mattingctl runs at `ulimit -n 512` and gets 600 idle connections,
// more than its whole limit. The default --max-conns comes from that limit
// (512 - 64 - 64 (admin) - 32 (control) - 3*(8+8) = 304 left, 228 once a
// quarter is kept as room to scale, 171 once a quarter of that goes to
// --max-upgraded); the rest wait in the kernel's backlog, so a
// replica killed with kill -9 is restarted, status answers in under a
// second, and once some idle connections close a new request is served.
// The full 20,000 run is `go run ./bench -scenario idleconns`.
func TestIdleConnectionsLeaveRoomForStatusAndRestarts(t *testing.T) {
	// Not parallel: status must answer within a second, so it runs alone.
	const (
		ulimit   = 512
		replicas = 2
		idle     = 600
		left     = ulimit - 64 - 64 - 32 - (replicas+1)*(8+8)
		wantMax  = (left - left/4) - (left-left/4)/4
	)
	home := t.TempDir()
	port := testutil.FreePorts(t, replicas+8)
	in := launch(t, "/bin/sh", home, port, "-c", "ulimit -n "+strconv.Itoa(ulimit)+` && exec "$0" "$@"`, mattingctl,
		"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--replicas", strconv.Itoa(replicas),
		// A fixed cap of 8: the budget above is for it (under auto it
		// plans for the upper bound, 64 a replica).
		"--max-inflight", "8", "--", fakemodel)
	st := in.waitReady(replicas)
	if st.MaxConns != wantMax {
		t.Fatalf("max_conns = %d at ulimit -n %d, want %d", st.MaxConns, ulimit, wantMax)
	}

	conns := make([]net.Conn, 0, idle)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range idle {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	testutil.WaitFor(t, 10*time.Second, strconv.Itoa(wantMax)+" client connections open", func() bool {
		return in.status().Conns == wantMax
	})
	pid := in.cmd.Process.Pid
	if fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil && len(fds) >= ulimit {
		t.Errorf("mattingctl holds %d file descriptors, its whole ulimit -n %d", len(fds), ulimit)
	}

	// At the limit a new client waits: its connection is not accepted.
	waiting := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := waiting.Get(in.url("/")); err == nil {
		resp.Body.Close()
		t.Fatalf("a client past --max-conns %d was answered %s", wantMax, resp.Status)
	}

	// The admin listener is not behind the limit: /metrics reports it.
	if got := metricValue(t, in.status().Admin, "mattingctl_client_connections"); got != wantMax {
		t.Errorf("mattingctl_client_connections = %v, want %d", got, wantMax)
	}

	old := st.Replicas[0]
	if err := syscall.Kill(old.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Timed on the control socket itself: the race-built `mattingctl
	// status` spends a second of its own at exit (the race detector's
	// atexit_sleep_ms), whatever the instance does.
	ctl, err := control.Connect(home, "")
	if err != nil {
		t.Fatal(err)
	}
	var slowest time.Duration
	testutil.WaitFor(t, 20*time.Second, "replica-1 restarted", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		t0 := time.Now()
		st, err := ctl.Status(ctx)
		slowest = max(slowest, time.Since(t0))
		if err != nil {
			t.Fatalf("status with %d idle connections open: %v", idle, err)
		}
		r := st.Replicas[0]
		return r.State == "ready" && r.Pid != old.Pid && r.Pid != 0
	})
	t.Logf("slowest status answer while replica-1 restarted: %s", slowest)
	// And the command, as a user runs it.
	if _, err := in.tryStatus(); err != nil {
		t.Fatal(err)
	}

	// Some idle clients go away: the connections waiting in the backlog
	// take their places, and there is room for a new request again.
	for _, c := range conns[:idle-wantMax+10] {
		c.Close()
	}
	conns = conns[idle-wantMax+10:]
	testutil.WaitFor(t, 10*time.Second, "a new request served", func() bool {
		_, err := get(in.url("/"))
		return err == nil
	})
	if st := in.status(); st.Replicas[0].State != "ready" || st.Replicas[1].State != "ready" {
		t.Errorf("after the idle connections: %+v", st.Replicas)
	}
}

// TestMaxConnsErrors: a --max-conns the open-file limit cannot hold, and a
// limit too low for any default, end in one line naming --max-conns and
// ulimit -n, before anything starts.
func TestMaxConnsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		ulimit int
		args   []string
		want   []string
	}{
		// 512 - 64 - 32 (control) - 2*(8+8) = 384 left with 1 replica
		// and no admin listener, one of them for --max-upgraded.
		{"explicit over the limit", 512, []string{"--max-conns", "384"}, []string{"--max-conns 384 does not fit the open-file limit", "ulimit -n is 512", "at most 383"}},
		{"negative", 512, []string{"--max-conns", "-1"}, []string{"--max-conns must not be negative"}},
		{"explicit over the limit with --max-upgraded", 512, []string{"--max-conns", "300", "--max-upgraded", "85"}, []string{"--max-conns 300 and --max-upgraded 85 do not fit", "sum at most 384"}},
		// 192 - 128 = 64 left; a quarter to --max-upgraded leaves 48, under
		// the least default of 64.
		{"ulimit too low for a default", 192, nil, []string{"leaves only 48 client connections", "raise ulimit -n", "--max-conns 48 or lower"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := strconv.Itoa(testutil.FreePorts(t, 3))
			// A fixed cap of 8, which the sums above are for (auto plans
			// for its upper bound, 64 a replica).
			args := append([]string{"-c", "ulimit -n " + strconv.Itoa(tt.ulimit) + ` && exec "$0" "$@"`, mattingctl,
				"up", "-p", port, "--host", "127.0.0.1", "--admin", "none", "--max-inflight", "8"}, tt.args...)
			_, errOut, code := runBinary(t, "/bin/sh", t.TempDir(), append(args, "--", fakemodel)...)
			if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want exit 1 and one line", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not say %q", errOut, w)
				}
			}
		})
	}
}
