//go:build unix

package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

func warmupFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "warmup.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSlotWarmsUpBeforeRotation: a replica that answers its readiness
// check at once is ready only once its two warm-up requests of 700ms each
// have run, one after the other. (That nothing reaches it before is
// e2e's TestWarmupBeforeTraffic.)
func TestSlotWarmsUpBeforeRotation(t *testing.T) {
	file := warmupFile(t, `{"path": "/sleep?d=700ms"}`)
	sl := testSlotWith(t, func(o *Options) { o.Warmup, o.WarmupCount = file, 2 }, "/health", 10*time.Second, CrashBackoff{}, "serve")
	st := waitState(t, sl, control.Ready, 10*time.Second)
	if took := time.Since(*st.StartedAt); took < 1400*time.Millisecond {
		t.Errorf("ready %s after its start, before two warm-ups of 700ms could be done", took)
	}
}

// TestSlotWarmupFailureFailsBoot: a warm-up answered 500 keeps the
// replica out of rotation and fails it, saying why.
func TestSlotWarmupFailureFailsBoot(t *testing.T) {
	file := warmupFile(t, `{"path": "/fail"}`)
	sl := testSlotWith(t, func(o *Options) { o.Warmup = file }, "", 10*time.Second, CrashBackoff{}, "serve")
	st := waitState(t, sl, control.Failed, 10*time.Second)
	if want := "failed its warm-up request 1 of 1 (GET /fail): answered 500 Internal Server Error: no model"; !strings.Contains(st.Error, want) {
		t.Errorf("error %q, want it to contain %q", st.Error, want)
	}
}

func TestWarmupOptions(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.json")
	for _, tc := range []struct {
		set  func(*Options)
		want string
	}{
		{func(o *Options) { o.Warmup = missing }, "--warmup " + missing + ": no such file or directory"},
		{func(o *Options) { o.Warmup = warmupFile(t, `{"path": "x"}`) }, `: "path" "x" is not a path starting with /`},
		{func(o *Options) { o.WarmupCount = -1 }, "--warmup-count must be at least 1, not -1"},
		{func(o *Options) { o.WarmupCount = 0 }, "--warmup-count must be at least 1, not 0"},
	} {
		o := upDefaults(1)
		tc.set(&o)
		_, err := o.resolve()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
	c, err := upDefaults(1).resolve()
	if err != nil || c.WarmupCount != 1 || c.warmup != nil {
		t.Errorf("no warm-up: %v, count %d", err, c.WarmupCount)
	}
	o := upDefaults(1)
	o.Warmup = warmupFile(t, `{"path": "/predict"}`)
	if c, err := o.resolve(); err != nil || c.warmup == nil || c.warmup.String() != "GET /predict" {
		t.Errorf("--warmup read as %v (%v), want GET /predict", c.warmup, err)
	}
}
