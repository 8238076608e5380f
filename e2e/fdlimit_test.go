package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// The descriptor attacks at `ulimit -n 1024`: before the budget,
// ~1,040 idle connections to the admin port, or ~500 WebSockets through
// the proxy, used every descriptor; the proxy stopped answering, status
// hung and a killed replica could not restart (pipe2: too many open
// files). Each test floods, then checks that the instance still does all
// three (stillServes).

const fileLimit = 1024

// stillServes checks, with a flood open, that in (run at fileLimit)
// holds fewer descriptors than its limit, answers 20 proxy requests and
// status, and restarts a replica killed with kill -9.
func stillServes(t *testing.T, in *instance) {
	t.Helper()
	pid := in.cmd.Process.Pid
	fds := openFiles(t, pid)
	t.Logf("mattingctl holds %d descriptors of %d", fds, fileLimit)
	if fds >= fileLimit-16 {
		t.Errorf("mattingctl holds %d descriptors, at its limit %d", fds, fileLimit)
	}
	for i := range 20 {
		if _, err := get(in.url("/")); err != nil {
			t.Fatalf("proxy request %d with the flood open: %v", i+1, err)
		}
	}
	// Timed on the control socket itself: the race-built `mattingctl
	// status` spends a second of its own at exit.
	ctl, err := control.Connect(in.home, "")
	if err != nil {
		t.Fatal(err)
	}
	status := func() (control.Status, time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		t0 := time.Now()
		st, err := ctl.Status(ctx)
		if err != nil {
			t.Fatalf("status with the flood open: %v", err)
		}
		return st, time.Since(t0)
	}
	st, took := status()
	t.Logf("status answered in %s", took.Round(time.Millisecond))
	old := st.Replicas[0]
	if err := syscall.Kill(old.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	testutil.WaitFor(t, 20*time.Second, "replica-1 restarted after kill -9", func() bool {
		st, _ := status()
		r := st.Replicas[0]
		return r.State == control.Ready && r.Pid != 0 && r.Pid != old.Pid
	})
	t.Logf("replica-1 restarted in %s", time.Since(t0).Round(time.Millisecond))
	if _, err := get(in.url("/")); err != nil {
		t.Errorf("proxy request after the restart: %v", err)
	}
	// And the command, as a user runs it.
	if _, err := in.tryStatus(); err != nil {
		t.Error(err)
	}
}

// TestIdleAdminConnectionsAtFileLimit: 1,100 keep-alive connections to
// the admin port, each having sent a request and reading nothing more.
// The admin listener holds --admin-max-conns (64) of them; the rest wait
// in the kernel's backlog, costing the instance nothing.
func TestIdleAdminConnectionsAtFileLimit(t *testing.T) {
	const idle = 1100
	in := startAtFileLimit(t, fileLimit, 2, "--", fakemodel)
	st := in.waitReady(2)
	conns := make([]net.Conn, 0, idle)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	req := "GET /livez HTTP/1.1\r\nHost: " + st.Admin + "\r\n\r\n"
	for range idle {
		c, err := net.DialTimeout("tcp", st.Admin, 5*time.Second)
		if err != nil {
			t.Fatalf("admin connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatalf("admin connection %d: %v", len(conns), err)
		}
	}
	// The first 64 were answered and are now idle keep-alive connections.
	testutil.WaitFor(t, 10*time.Second, "64 admin connections accepted", func() bool {
		return openFiles(t, in.cmd.Process.Pid) >= 64
	})
	stillServes(t, in)
}

// TestWebSocketsAtFileLimit: 600 WebSockets through the proxy at default
// flags. Each upgraded one holds two descriptors; the derived
// --max-upgraded (153 here) admits that many and answers the rest 503,
// before they reach a replica.
func TestWebSocketsAtFileLimit(t *testing.T) {
	t.Parallel()
	const sockets = 600
	in := startAtFileLimit(t, fileLimit, 2, "--", fakemodel)
	st := in.waitReady(2)
	if st.MaxUpgraded < 1 || st.MaxUpgraded >= sockets {
		t.Fatalf("max_upgraded %d at ulimit -n %d: the test needs a cap under %d", st.MaxUpgraded, fileLimit, sockets)
	}
	t.Logf("max_conns %d, max_upgraded %d", st.MaxConns, st.MaxUpgraded)
	var open []*testutil.WebSocket
	codes := map[int]int{}
	for range sockets {
		c, code := dialWebSocket(t, in)
		codes[code]++
		if c != nil {
			open = append(open, c)
		}
	}
	t.Logf("%d WebSockets: %v", sockets, codes)
	if codes[101] != st.MaxUpgraded || codes[503] != sockets-st.MaxUpgraded {
		t.Errorf("%d WebSockets: %v; want %d upgraded (--max-upgraded) and the rest 503", sockets, codes, st.MaxUpgraded)
	}
	if len(open) == 0 {
		t.Fatal("no WebSocket was upgraded")
	}
	echo(t, open[len(open)-1], "still open")
	upgraded := int64(0)
	for _, r := range in.status().Replicas {
		upgraded += r.Upgraded
	}
	if upgraded != int64(st.MaxUpgraded) {
		t.Errorf("replicas hold %d upgraded connections, want %d", upgraded, st.MaxUpgraded)
	}
	stillServes(t, in)
}

// TestScaleRefusedPastTheFileLimit: at ulimit -n 1024 an instance of 2
// replicas, with derived caps and a fixed --max-inflight 8 (auto plans for
// its upper bound, 64 a replica), has room for 14; `scale 4` works, `scale
// 15` is refused in one line naming the limit and how to raise it, by
// the command and the dashboard's API alike, and nothing changes.
func TestScaleRefusedPastTheFileLimit(t *testing.T) {
	t.Parallel()
	in := startAtFileLimit(t, fileLimit, 2, "--max-inflight", "8", "--", fakemodel)
	in.waitReady(2)
	if _, stderr, code := in.ctl("scale", "4"); code != 0 {
		t.Fatalf("scale 4, within the room kept: exit %d: %s", code, stderr)
	}
	_, stderr, code := in.ctl("scale", "15")
	line := strings.TrimPrefix(strings.TrimSpace(stderr), "mattingctl: ")
	for _, want := range []string{"cannot scale to 15:", "ulimit -n is 1024", "enough for 14",
		fmt.Sprintf("prlimit --pid %d --nofile=", in.cmd.Process.Pid), "LimitNOFILE="} {
		if !strings.Contains(line, want) {
			t.Errorf("scale 15 said %q; want %q in it", line, want)
		}
	}
	if code != 1 || strings.Contains(line, "\n") {
		t.Errorf("scale 15: exit %d, stderr %q; want 1 and one line", code, stderr)
	}
	_, token := dashboardLink(t, in)
	status, body := postAction(t, "http://"+in.status().Admin+"/api/scale", `{"replicas": 15}`, token)
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	if status != 409 || e.Error != line {
		t.Errorf("POST /api/scale 15: %d %q; want 409 and the command's words %q", status, e.Error, line)
	}
	if st := in.status(); st.Desired != 4 || len(st.Replicas) != 4 {
		t.Errorf("after refused scales: desired %d, %d replicas; want 4", st.Desired, len(st.Replicas))
	}
}
