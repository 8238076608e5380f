package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// mattingctl is built with -race, and the race detector reports to the
// process's stderr and carries on: a race in the supervisor would pass
// unnoticed unless the tests read that output. Every process a test
// starts from the binary has its output checked here.

// raceWarning opens every report of Go's race detector; a line of "="
// comes before it and another closes the report.
const (
	raceWarning = "WARNING: DATA RACE"
	raceRule    = "=================="
)

// raceReport returns the first race report in output, from its opening
// rule to its closing one, and says how many more follow; "" if output
// holds none.
func raceReport(output string) string {
	i := strings.Index(output, raceWarning)
	if i < 0 {
		return ""
	}
	// Back up to the rule before the warning, if it is there.
	if j := strings.LastIndex(output[:i], raceRule); j >= 0 && strings.TrimSpace(output[j+len(raceRule):i]) == "" {
		i = j
	}
	report := output[i:]
	rest := ""
	if end := strings.Index(report[len(raceRule):], raceRule); end >= 0 {
		cut := len(raceRule) + end + len(raceRule)
		report, rest = report[:cut], report[cut:]
	}
	// A report names a few stacks; cap it anyway, so that a garbled one
	// does not flood the test log.
	const maxReport = 8 << 10
	if len(report) > maxReport {
		report = report[:maxReport] + "\n[report cut at 8 KiB]"
	}
	if n := strings.Count(rest, raceWarning); n > 0 {
		report += "\n(and " + strconv.Itoa(n) + " more race reports)"
	}
	return report
}

// checkRace fails t if output, everything the process named what printed,
// holds a race report, quoting the report.
func checkRace(t testing.TB, what, output string) {
	t.Helper()
	if r := raceReport(output); r != "" {
		t.Errorf("%s printed a race report:\n%s", what, r)
	}
}

// cleanupDetached is for a test that starts the instance "default" in the
// background in home (up -d, or detach: true in a config file). At the
// end of the test it stops the instance if it still runs, waits for its
// process to exit and checks the instance's log, where the background
// copy's output goes, for race reports.
func cleanupDetached(t *testing.T, home string) {
	t.Helper()
	t.Cleanup(func() {
		if out, _, code := run(t, home, "status", "--json"); code == 0 {
			var st struct{ Pid int }
			if err := json.Unmarshal([]byte(out), &st); err != nil || st.Pid == 0 {
				t.Errorf("status --json printed %q: %v", out, err)
			} else {
				if _, _, code := run(t, home, "down", "--timeout", "30s"); code != 0 {
					_ = syscall.Kill(st.Pid, syscall.SIGKILL)
				}
				testutil.WaitFor(t, 40*time.Second, "the background instance to exit", func() bool { return !alive(st.Pid) })
			}
		}
		log := filepath.Join(home, "default.log")
		b, err := os.ReadFile(log)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Error(err)
		}
		checkRace(t, "the background mattingctl (log "+log+")", string(b))
	})
}

// racyEnv, in the environment of a child test binary, names the racy
// program TestRaceReportFailsTheTest's child runs.
const racyEnv = "MATTINGCTL_E2E_RACY"

// buildRacy builds testdata/racy, a program with a deliberate data race,
// with the race detector.
func buildRacy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "racy")
	if out, err := exec.Command("go", "build", "-race", "-o", bin, "./testdata/racy").CombinedOutput(); err != nil {
		t.Fatalf("building testdata/racy: %v\n%s", err, out)
	}
	return bin
}

// TestRaceReport checks raceReport on the real output of a racy program
// built with -race, and on output without a race.
func TestRaceReport(t *testing.T) {
	t.Parallel()
	racy := buildRacy(t)
	out, err := exec.Command(racy).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 66 {
		// 66 is the race detector's exit code.
		t.Fatalf("racy exited with %v, want exit status 66:\n%s", err, out)
	}
	r := raceReport(string(out))
	if !strings.HasPrefix(r, raceRule+"\n"+raceWarning+"\n") || !strings.HasSuffix(r, raceRule) ||
		!strings.Contains(r, "main.main.func1()") || !strings.Contains(r, "testdata/racy/main.go:") {
		t.Errorf("raceReport of racy's output = %q; want the whole report, from rule to rule\noutput:\n%s", r, out)
	}
	if strings.Contains(r, "racy: n =") || strings.Contains(r, "Found 1 data race") {
		t.Errorf("raceReport takes in more than the report: %q", r)
	}
	twice := string(out) + "replica-1 | a line between\n" + string(out)
	if r2 := raceReport(twice); !strings.HasPrefix(r2, r) || !strings.HasSuffix(r2, "(and 1 more race reports)") {
		t.Errorf("raceReport of two reports = %q; want the first and a count of the other", r2)
	}

	help, _, code := run(t, t.TempDir(), "--help")
	if code != 0 || help == "" {
		t.Fatalf("mattingctl --help: exit %d, %q", code, help)
	}
	for _, clean := range []string{"", help, "racy: n = 2\n", raceRule + "\n"} {
		if r := raceReport(clean); r != "" {
			t.Errorf("raceReport(%q) = %q, want none", clean, r)
		}
	}
}

// TestRaceReportFailsTheTest proves the check end to end: a child test
// runs the racy program through runBinary, the helper every one-shot
// mattingctl command goes through, and through launch, the one every
// started instance goes through. Both must fail the child test, quoting
// the report; nothing else in them fails.
func TestRaceReportFailsTheTest(t *testing.T) {
	if racy := os.Getenv(racyEnv); racy != "" {
		t.Run("run", func(t *testing.T) {
			if _, _, code := runBinary(t, racy, t.TempDir()); code != 66 {
				t.Logf("racy exited %d, want 66", code) // not a failure: only the race check may fail this
			}
		})
		t.Run("start", func(t *testing.T) {
			in := launch(t, racy, t.TempDir(), 0)
			select {
			case <-in.done:
			case <-time.After(30 * time.Second):
				t.Log("racy still running after 30s")
			}
		})
		return
	}
	t.Parallel()
	racy := buildRacy(t)
	child := exec.Command(os.Args[0], "-test.run=^TestRaceReportFailsTheTest$", "-test.count=1", "-test.v")
	child.Env = append(os.Environ(), racyEnv+"="+racy)
	out, err := child.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the child test passed (%v) though the program it ran raced:\n%s", err, out)
	}
	for _, want := range []string{
		"--- FAIL: TestRaceReportFailsTheTest/run",
		"--- FAIL: TestRaceReportFailsTheTest/start",
		"racy printed a race report:",
		raceWarning,
		"testdata/racy/main.go:",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the child test's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(string(out), "printed a race report:") != 2 {
		t.Errorf("want one race failure from each of run and start:\n%s", out)
	}
	t.Logf("the child test failed as it should:\n%s", out)
}
