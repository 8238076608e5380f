package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// cpuTicks returns the user and system CPU time of process pid, in clock
// ticks (100 a second).
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

var (
	plainOnce sync.Once
	plainBin  string // mattingctl built without the race detector
	plainErr  error
)

// plainMattingctl builds mattingctl without the race detector, once, for
// tests that measure its CPU: the race detector makes each byte read from
// a pipe cost as much as the whole of what they measure.
func plainMattingctl(t *testing.T) string {
	t.Helper()
	plainOnce.Do(func() {
		plainBin = filepath.Join(filepath.Dir(mattingctl), "mattingctl-norace")
		out, err := exec.Command("go", "build", "-o", plainBin, "../cmd/mattingctl").CombinedOutput()
		if err != nil {
			plainErr = fmt.Errorf("building mattingctl without -race: %v\n%s", err, out)
		}
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainBin
}

// TestReplicaOutputFloodCostIsBounded: a replica whose stdout gets lines
// as fast as `yes` writes them (over a GB a second) cost mattingctl most of
// a core, passing them on. Past --output-rate (1 MiB a second by default)
// they are dropped, counted and noticed, and mattingctl's CPU stays low;
// the proxy answers meanwhile.
func TestReplicaOutputFloodCostIsBounded(t *testing.T) {
	const window, maxShare = 5 * time.Second, 0.35
	t.Setenv("FAKEMODEL", fakemodel)
	port := testutil.FreePorts(t, 9)
	in := launch(t, plainMattingctl(t), t.TempDir(), port, "up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0",
		"--", "sh", "-c", `yes "$(printf '%099d' 0)" & exec "$FAKEMODEL"`)
	st := in.waitReady(1)
	time.Sleep(time.Second) // past the first second's burst
	before := cpuTicks(t, in.cmd.Process.Pid)
	began := time.Now()
	for time.Since(began) < window {
		if _, err := get(in.url("/")); err != nil {
			t.Fatalf("request during the flood: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	share := float64(cpuTicks(t, in.cmd.Process.Pid)-before) / 100 / time.Since(began).Seconds()
	dropped := metricValue(t, st.Admin, "mattingctl_output_lines_over_rate_total")
	t.Logf("mattingctl used %.0f%% of a core over %s while a replica flooded its stdout; %.0f lines dropped over the rate", share*100, window, dropped)
	if share > maxShare {
		t.Errorf("mattingctl used %.0f%% of a core, want at most %.0f%%", share*100, maxShare*100)
	}
	if dropped < 1e6 {
		t.Errorf("%.0f lines dropped over the rate, want millions", dropped)
	}
	testutil.WaitFor(t, 5*time.Second, "a notice of the dropped lines", func() bool {
		return strings.Contains(in.stdout.String()+in.stderr.String(), "replica-1 | mattingctl: dropped ")
	})
}
