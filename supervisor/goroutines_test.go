//go:build unix

package supervisor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestRunLeavesNoGoroutine runs an instance with every background part
// busy (liveness checks, the access log, the admin endpoints and the
// control socket with connections open, a scale-down's hand-over, a
// rolling restart from SIGHUP under way) and stops it through Run's
// context. Once Run has returned, no goroutine it started may remain.
func TestRunLeavesNoGoroutine(t *testing.T) {
	var opts Options
	s := newTestSupervisor(t, func(o *Options) {
		o.Replicas, o.Health, o.Host, o.Admin, o.Name = 2, "/health", "127.0.0.1", "127.0.0.1:0", "goroutines-test"
		fastLiveness(time.Minute)(o)
		o.AccessLog = filepath.Join(t.TempDir(), "access.log")
		opts = *o
	}, "serve")
	// A goroutine of the instance's that takes a moment to wind up once
	// the instance has stopped: Run waits for it.
	var wound atomic.Bool
	s.bg.Go(func() {
		<-s.stopped
		time.Sleep(300 * time.Millisecond)
		wound.Store(true)
	})
	before := goroutineStacks()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()

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
	// Keep-alive connections to the proxy and the admin endpoints, left
	// open and idle.
	client := &http.Client{Timeout: 10 * time.Second}
	for _, url := range []string{
		"http://127.0.0.1:" + strconv.Itoa(opts.Port) + "/health",
		"http://" + s.Status().Admin + "/readyz",
	} {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Up and down again: the removed replica's hand-over and forget.
	if _, err := c.Scale(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	// A SIGHUP (a reload with no file to read), and a rolling restart
	// under way when the stop comes.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		_, _ = c.Restart(context.Background()) // cut short by the stop
	}()
	testutil.WaitFor(t, 20*time.Second, "the rolling restart to begin", func() bool {
		for _, r := range s.Status().Replicas {
			if r.LastRestart == ReasonRolling {
				return true
			}
		}
		return false
	})
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running 30s after its context ended")
	}
	<-restarted
	if !wound.Load() {
		t.Error("Run returned before a goroutine of the instance had ended")
	}

	// A goroutine that has just signalled its end (a WaitGroup's Done, a
	// channel closed in a defer) is still on its way out for a moment:
	// the check allows that much, not a goroutine that goes on working.
	var left []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		left = left[:0]
		for id, stack := range goroutineStacks() {
			if _, ok := before[id]; !ok && startedByRun(stack) {
				left = append(left, stack)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("%d goroutines outlived Run:\n\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// goroutineStacks returns the stack of every goroutine, by id.
func goroutineStacks() map[int]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	stacks := make(map[int]string)
	for _, g := range strings.Split(string(buf), "\n\n") {
		var id int
		if _, err := fmt.Sscanf(g, "goroutine %d ", &id); err == nil {
			stacks[id] = g
		}
	}
	return stacks
}

// startedByRun reports whether stack is of a goroutine at work for an
// instance: running code of this module or started by it (the test's own
// goroutine, which ran Run, aside), or a server's connection or accept
// loop.
func startedByRun(stack string) bool {
	if strings.Contains(stack, "created by github.com/mattingctl/mattingctl/supervisor.TestRunLeavesNoGoroutine") {
		return false
	}
	for _, line := range strings.Split(stack, "\n") {
		line = strings.TrimPrefix(line, "created by ")
		if strings.HasPrefix(line, "github.com/mattingctl/mattingctl/") ||
			strings.HasPrefix(line, "net/http.(*conn).serve") ||
			strings.HasPrefix(line, "net/http.(*Server).Serve") {
			return true
		}
	}
	return false
}
