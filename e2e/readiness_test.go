package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestReadinessProgress: while a replica is not ready, up logs every 10s
// why, in words, and the ready-timeout error names the last cause. The two
// cases are a --health path the server answers 404 on, and a server that
// never listens on its PORT (one that ignores PORT, say). They run side by
// side: each waits out its 13s ready timeout.
func TestReadinessProgress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		// cause is the last check's failure; %d is the replica's port.
		cause string
	}{
		{"health path answers 404", []string{"--health", "/health", "--", fakemodel, "-health-status", "404"}, "GET /health -> 404"},
		{"nothing listens on the port", []string{"--", fakemodel, "-listen-delay", "1h"}, "no listener on 127.0.0.1:%d (connection refused)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const readyTimeout = 13 * time.Second
			begun := time.Now()
			in := start(t, 1, append([]string{"--ready-timeout", readyTimeout.String()}, tt.args...)...)
			cause := strings.Replace(tt.cause, "%d", strconv.Itoa(in.port+1), 1)

			// The first progress line comes 10s after the start.
			var line string
			testutil.WaitFor(t, 12*time.Second, "the readiness-progress line", func() bool {
				line = lineWith(in.stderr.String(), "replica not ready yet")
				return line != ""
			})
			if waited := time.Since(begun); waited < 9*time.Second {
				t.Errorf("the first progress line came after %s, want 10s", waited.Round(time.Millisecond))
			}
			for _, want := range []string{"replica=replica-1", "waited=10s", `last_check="` + cause + `"`, "ready_timeout=13s"} {
				if !strings.Contains(line, want) {
					t.Errorf("progress line %q, want %q in it", line, want)
				}
			}

			if code := in.wait(30 * time.Second); code == 0 {
				t.Fatal("exit code 0 for a replica that never became ready")
			}
			want := "mattingctl: replica-1 (port " + strconv.Itoa(in.port+1) + ") did not become ready within 13s; last check: " + cause
			if last := lastLine(in.stderr.String()); last != want {
				t.Errorf("last line = %q, want %q", last, want)
			}
		})
	}
}

// lineWith returns the first line of s that contains sub, or "".
func lineWith(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}
