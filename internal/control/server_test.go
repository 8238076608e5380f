package control

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd here")
	}
	return len(es)
}

// TestPollingLeavesNoConnections: `up -d` polls status five times a
// second while a model loads; each poll is a new client, and none may
// leave a connection open in the instance (they did, with keep-alive).
func TestPollingLeavesNoConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts fds in /proc")
	}
	dir := filepath.Join(t.TempDir(), "s")
	srv, err := Listen(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(newFakeInstance("fake"), hclog.NewNullLogger())
	defer srv.Close()
	before := openFDs(t)
	for range 100 {
		c, err := Connect(dir, "default")
		if err != nil {
			t.Fatal(err)
		}
		if st, err := c.Status(context.Background()); err != nil || st.Name != "fake" {
			t.Fatalf("status: %+v, %v", st, err)
		}
	}
	// Closing is asynchronous on the server's side: allow it a moment.
	testutil.WaitFor(t, 5*time.Second, "the polls' connections to close", func() bool { return openFDs(t) < before+10 })
}

// TestDown: down asks the instance to stop and answers once it has.
func TestDown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	srv, err := Listen(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	inst := newFakeInstance("fake")
	srv.Start(inst, hclog.NewNullLogger())
	defer srv.Close()
	c, err := Connect(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Down(context.Background()); err != nil {
		t.Fatalf("down: %v", err)
	}
	select {
	case <-inst.stopped:
	default:
		t.Fatal("down returned but the instance was not asked to stop")
	}
}

// TestReloadAndSet: reload and set reach the instance and bring back its
// result, and a refusal comes back as the instance's one-line error.
func TestReloadAndSet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	srv, err := Listen(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(newFakeInstance("fake"), hclog.NewNullLogger())
	defer srv.Close()
	c, err := Connect(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if res, err := c.Reload(ctx); err != nil || res.File != "/etc/m.yaml" {
		t.Errorf("reload: %+v, %v", res, err)
	}
	res, err := c.Set(ctx, []string{"queue=2"})
	if err != nil || len(res.Changes) != 1 || res.Changes[0] != (Change{Setting: "queue", Old: "1", New: "2", Applied: AppliedLive}) {
		t.Errorf("set: %+v, %v", res, err)
	}
	if _, err := c.Set(ctx, []string{"port=1"}); err == nil || err.Error() != "port cannot change while the instance runs" {
		t.Errorf("a refused set: %v, want the instance's error as it is", err)
	}
	if _, err := c.Set(ctx, nil); err == nil {
		t.Error("a set of nothing was accepted")
	}
}
