package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestBadValuesAreRefused is the list of values that used to be
// replaced by defaults without a word: each is now refused, naming the
// flag (or the file and line), with nothing started.
func TestBadValuesAreRefused(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "mattingctl.yaml")
	if err := os.WriteFile(file, []byte("replicas: 2\nstop-timeout: -5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--stop-timeout", "-5s"}, `invalid argument "-5s" for "--stop-timeout" flag: must not be negative, not -5s`},
		{[]string{"--stop-timeout", "0"}, `invalid argument "0" for "--stop-timeout" flag: must be more than 0`},
		{[]string{"--max-body", "0"}, `invalid argument "0" for "--max-body" flag: must be more than 0`},
		{[]string{"--ready-timeout", "-1m"}, `invalid argument "-1m" for "--ready-timeout" flag: must not be negative, not -1m`},
		{[]string{"--queue-timeout", "-1s"}, `invalid argument "-1s" for "--queue-timeout" flag: must not be negative, not -1s`},
		{[]string{"--min-ready", "5", "-r", "1"}, "--min-ready 5 is more than --replicas 1: /readyz would never answer 200"},
		{[]string{"-f", file}, file + ": line 2: stop-timeout: must not be negative, not -5s"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"up", "--host", "127.0.0.1", "-p", strconv.Itoa(testutil.FreePorts(t, 3))}, tt.args...)
			_, stderr, code := run(t, t.TempDir(), append(args, "--", fakemodel)...)
			if code == 0 || stderr != "mattingctl: "+tt.want+"\n" {
				t.Errorf("exit %d, stderr:\n%s\nwant the one line %q", code, stderr, tt.want)
			}
		})
	}
}

// TestScaleBelowMinReadyWarns: scaling below --min-ready is done, with a
// warning on stderr, and /readyz follows.
func TestScaleBelowMinReadyWarns(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--min-ready", "2", "--", fakemodel)
	in.waitReady(2)
	out, stderr, code := in.ctl("scale", "1")
	want := "mattingctl: warning: scaling to 1, fewer than --min-ready 2: /readyz answers 503 while fewer than 2 replicas are ready"
	if code != 0 || !strings.Contains(out, "2 -> 1 replicas") || strings.TrimSpace(stderr) != want {
		t.Fatalf("scale 1: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	in.waitReady(1)
	admin := in.status().Admin
	resp, err := client.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/readyz with 1 of --min-ready 2: %d, want 503", resp.StatusCode)
	}
	if _, stderr, code := in.ctl("scale", "2"); code != 0 || stderr != "" {
		t.Errorf("scale back to 2: exit %d, stderr %q", code, stderr)
	}
}
