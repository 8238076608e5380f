package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// tuneCmd is `mattingctl tune ARGS` with MATTINGCTL_HOME=home and every
// process it starts tagged with tag, dying with the test.
func tuneCmd(t *testing.T, home, tag string, args ...string) (*exec.Cmd, *testutil.SyncBuffer, *testutil.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(mattingctl, append([]string{"tune"}, args...)...)
	cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home, "TMPDIR="+testTmp(home), tagEnv+"="+tag)
	cmd.SysProcAttr = diesWithTest()
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t.Cleanup(func() {
		for _, pid := range tagged(tag) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return cmd, &stdout, &stderr
}

// tuneRequest writes a request file fakemodel answers.
func tuneRequest(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "req.json")
	if err := os.WriteFile(p, []byte(`{"method": "POST", "path": "/predict", "body": {"image": "x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(testTmp(dir), 0o755)
	return p
}

// exitCode waits for cmd and returns its exit code.
func exitCode(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("tune did not end within %s", within)
		return -1
	}
}

// TestTuneFindsTheKnee: on a model server that serves best at 4 requests
// in flight and worse past it (fakemodel -curve 4), with one replica and
// in-flight 1, 2, 4, 8, 16 and auto to try, tune measures 1 to 8, skips 16
// (8 did not pay), finishes within its budget, and recommends 4, or auto
// having learned a cap near 4; nothing it started is left.
func TestTuneFindsTheKnee(t *testing.T) {
	home, tag := t.TempDir(), "tune-knee-"+strconv.Itoa(os.Getpid())
	chart := filepath.Join(home, "tune.svg")
	const budget = 100 * time.Second
	cmd, stdout, stderr := tuneCmd(t, home, tag, "--request", tuneRequest(t, home), "--replicas", "1", "--inflight", "1,2,4,8,16,auto",
		"--duration", "3s", "--budget", budget.String(), "--chart", chart, "--", fakemodel, "-curve", "4", "-service", "50ms")
	begun := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	code := exitCode(t, cmd, budget+30*time.Second)
	took := time.Since(begun)
	out := stdout.String()
	checkRace(t, "mattingctl tune", out+stderr.String())
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	t.Logf("took %s\n%s\n%s", took.Round(time.Second), stderr.String(), out)
	if took > budget+15*time.Second {
		t.Errorf("took %s, past the budget %s and the last layout's stop", took, budget)
	}
	for _, n := range []string{"1", "2", "4", "8", "auto"} {
		if !regexp.MustCompile(`(?m)^1 +\S+ each +` + n + `\b`).MatchString(out) {
			t.Errorf("no row for inflight %s", n)
		}
	}
	if !strings.Contains(out, "inflight 16: inflight 8 did not raise requests/s") {
		t.Errorf("16 not skipped for 8 not paying")
	}
	up := regexp.MustCompile(`(?m)^  mattingctl up --replicas 1 (?:--cpus \S+ )?--max-inflight (\S+) -- ` + regexp.QuoteMeta(fakemodel) + ` -curve 4 -service 50ms$`).FindStringSubmatch(out)
	if up == nil {
		t.Fatalf("no up line for one replica of the command")
	}
	switch up[1] {
	case "4":
	case "auto":
		// The first row is the best; auto's learned cap is in brackets.
		m := regexp.MustCompile(`(?m)^1 +.*auto \((\d+)\)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("best is auto, and its row says no learned cap")
		}
		if n, _ := strconv.Atoi(m[1]); n < 3 || n > 6 {
			t.Errorf("best is auto, with a learned cap of %v: not near 4", m)
		}
	default:
		t.Errorf("best is --max-inflight %s, want 4 (or auto near 4)", up[1])
	}
	if b, err := os.ReadFile(chart); err != nil || !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "(best)") {
		t.Errorf("--chart: %v", err)
	}
	if left := tagged(tag); len(left) > 0 {
		t.Errorf("left running: %s", describe(left))
	}
}

// TestTuneInterruptPrintsWhatItMeasured: Ctrl-C during a sweep stops the
// layout under way, prints the table of those measured before, exits 130
// and leaves nothing running.
func TestTuneInterruptPrintsWhatItMeasured(t *testing.T) {
	home, tag := t.TempDir(), "tune-int-"+strconv.Itoa(os.Getpid())
	cmd, stdout, stderr := tuneCmd(t, home, tag, "--request", tuneRequest(t, home), "--replicas", "1",
		"--duration", "2s", "--", fakemodel, "-curve", "64", "-service", "20ms")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the first layout measured", func() bool {
		return strings.Contains(stderr.String(), "inflight 1 ")
	})
	time.Sleep(time.Second) // into the second layout
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code := exitCode(t, cmd, 30*time.Second)
	out, errOut := stdout.String(), stderr.String()
	checkRace(t, "mattingctl tune", out+errOut)
	if code != 130 {
		t.Fatalf("exit %d, want 130\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.HasPrefix(out, "REPLICAS") || !regexp.MustCompile(`(?m)^1 +\S+ each +1 `).MatchString(out) ||
		!strings.Contains(out, ": interrupted") || !strings.Contains(errOut, "tune interrupted") {
		t.Errorf("no table of the layouts measured, or no word of the interrupt:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	if left := tagged(tag); len(left) > 0 {
		t.Errorf("left running: %s", describe(left))
	}
}

// TestTuneRefuses: a request missing, or a replica that never becomes
// ready, is one line naming it, a non-zero exit, and nothing left.
func TestTuneRefuses(t *testing.T) {
	t.Parallel()
	home, tag := t.TempDir(), "tune-refuse-"+strconv.Itoa(os.Getpid())
	req := tuneRequest(t, home)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--", fakemodel}, "mattingctl: no request to measure with: give --request FILE"},
		{[]string{"--request", filepath.Join(home, "none.json"), "--", fakemodel}, "mattingctl: --request " + filepath.Join(home, "none.json") + ": no such file or directory"},
		{[]string{"--request", req, "--replicas", "1", "--inflight", "1", "--duration", "1s", "--", fakemodel, "-fail-start"},
			"exited before becoming ready (exit code 1)"},
	} {
		cmd, stdout, stderr := tuneCmd(t, home, tag, c.args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		code := exitCode(t, cmd, 60*time.Second)
		errOut := stderr.String()
		checkRace(t, "mattingctl tune", stdout.String()+errOut)
		last := errorLine(errOut)
		if code == 0 || !strings.Contains(last, c.want) || !strings.HasPrefix(last, "mattingctl: ") {
			t.Errorf("tune %v: exit %d, error line %q; want non-zero and %q", c.args, code, last, c.want)
		}
		if strings.Count(errOut, "mattingctl:") != 1 {
			t.Errorf("tune %v: more than one error line:\n%s", c.args, errOut)
		}
		if left := tagged(tag); len(left) > 0 {
			t.Errorf("tune %v left running: %s", c.args, describe(left))
		}
	}
}
