//go:build unix

package supervisor

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestRun runs a whole instance in this process: the proxy, the control
// socket and the admin listener on loopback, driven as the commands and an
// orchestrator would, then stopped by SIGTERM.
func TestRun(t *testing.T) {
	var opts Options
	s := newTestSupervisor(t, func(o *Options) {
		o.Replicas, o.Health, o.Host, o.Admin, o.Name = 2, "/health", "127.0.0.1", "127.0.0.1:0", "run-test"
		opts = *o
	}, "serve")
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()

	var c *control.Client
	testutil.WaitFor(t, 20*time.Second, "the instance to be ready", func() bool {
		var err error
		if c == nil {
			if c, err = control.Connect(opts.StateDir, opts.Name); err != nil {
				return false
			}
		}
		st, err := c.Status(context.Background())
		return err == nil && st.Ready() == 2
	})
	st, err := c.Status(context.Background())
	if err != nil || st.Name != "run-test" || st.Admin == "" || st.Port != opts.Port || st.MaxInflight != opts.MostInflight() {
		t.Fatalf("status: %+v, %v", st, err)
	}

	// The proxy answers, from a replica.
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(opts.Port) + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("through the proxy: %v %v", resp, err)
	}
	resp.Body.Close()

	// The admin listener: ready, live, and metrics that count that request.
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + st.Admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"ready": 2`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, _ := get("/livez"); code != 200 {
		t.Errorf("/livez: %d", code)
	}
	// A request is counted as its handler ends, which may be just after
	// its client has the answer.
	var code int
	var body string
	testutil.WaitFor(t, 5*time.Second, "/metrics to count the request", func() bool {
		code, body = get("/metrics")
		return code == 200 && (strings.Contains(body, `mattingctl_requests_total{code="200",replica="replica-1"} 1`) ||
			strings.Contains(body, `mattingctl_requests_total{code="200",replica="replica-2"} 1`))
	})

	// Scale through the socket; a body without "replicas" is refused.
	res, err := c.Scale(context.Background(), 3)
	if err != nil || len(res.Started) != 1 {
		t.Fatalf("scale: %+v, %v", res, err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", control.SocketPath(opts.StateDir, opts.Name))
	}}}
	for _, body := range []string{`{}`, `{"replicas": 1, "force": true}`, `[1]`} {
		resp, err := hc.Post("http://mattingctl/v1/scale", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e.Error, "bad scale request") {
			t.Errorf("scale body %s: %d %q, want 400", body, resp.StatusCode, e.Error)
		}
	}
	if st, _ := c.Status(context.Background()); st.Desired != 3 {
		t.Errorf("a refused scale request changed the count to %d", st.Desired)
	}

	// SIGHUP without -f changes nothing; restart rolls every replica.
	before := pids(s.Status())
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Restart(context.Background()); err != nil || res.Error != "" {
		t.Fatalf("restart: %+v, %v", res, err)
	}
	testutil.WaitFor(t, 30*time.Second, "the rolling restart", func() bool {
		st := s.Status()
		if st.Ready() != 3 {
			return false
		}
		for _, r := range st.Replicas {
			if r.LastRestart != ReasonRolling {
				return false
			}
		}
		return true
	})
	waitGone(t, 5*time.Second, before...)

	// SIGTERM stops it gracefully.
	running := pids(s.Status())
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run still running 20s after SIGTERM")
	}
	waitGone(t, 5*time.Second, running...)
	if _, err := control.Connect(opts.StateDir, opts.Name); err == nil {
		t.Error("the control socket outlived the instance")
	}
}

// TestRunDown: `down` through the socket stops the instance, and the call
// returns once it has.
func TestRunDown(t *testing.T) {
	var opts Options
	s := newTestSupervisor(t, func(o *Options) {
		o.Host, o.Admin = "127.0.0.1", "none"
		opts = *o
	}, "serve")
	ran := make(chan error, 1)
	go func() { ran <- s.Run(context.Background()) }()
	var c *control.Client
	testutil.WaitFor(t, 20*time.Second, "the instance to be ready", func() bool {
		var err error
		if c, err = control.Connect(opts.StateDir, opts.Name); err != nil {
			return false
		}
		st, err := c.Status(context.Background())
		return err == nil && st.Ready() == 1
	})
	if err := c.Down(context.Background()); err != nil {
		t.Fatalf("down: %v", err)
	}
	select {
	case <-s.Stopped():
	default:
		t.Error("down returned before the instance had stopped")
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run after down: %v", err)
	}
}

// TestRunBootFailure: a replica that cannot start fails Run, naming it,
// and leaves nothing behind.
func TestRunBootFailure(t *testing.T) {
	var opts Options
	s := newTestSupervisor(t, func(o *Options) {
		o.Host, o.Admin = "127.0.0.1", "none"
		opts = *o
	}, "exit", "3")
	err := s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "replica-1") || !strings.Contains(err.Error(), "exit code 3") {
		t.Fatalf("Run with a replica that exits: %v", err)
	}
	if _, err := control.Connect(opts.StateDir, opts.Name); err == nil {
		t.Error("the control socket outlived a failed start")
	}
}
