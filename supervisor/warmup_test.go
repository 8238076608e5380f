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
		o    Options
		want string
	}{
		{Options{Warmup: missing}, "--warmup " + missing + ": no such file or directory"},
		{Options{Warmup: warmupFile(t, `{"path": "x"}`)}, `: "path" "x" is not a path starting with /`},
		{Options{WarmupCount: -1}, "--warmup-count must be at least 1, not -1"},
	} {
		err := tc.o.warmupDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
	o := Options{}
	if err := o.warmupDefaults(); err != nil || o.WarmupCount != 1 || o.warmup != nil {
		t.Errorf("no warm-up: %v, count %d", err, o.WarmupCount)
	}
}
