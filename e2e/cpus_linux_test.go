package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
	"github.com/mattingctl/mattingctl/replica"
)

// ownCPUs is the test's affinity mask, which mattingctl inherits.
func ownCPUs(t *testing.T) []int {
	t.Helper()
	cpus, err := replica.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	return cpus
}

// procField reads a field of /proc/PID/status ("Cpus_allowed_list").
func procField(t *testing.T, path, field string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s has no %s", path, field)
	return ""
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			kids = append(kids, n)
		}
	}
	return kids
}

// environ reads a process's environment.
func environ(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// forkingModel is a command line whose replica process (fakemodel, after
// the shell's exec) has a child of its own: the shell's sleep.
func forkingModel() []string {
	return []string{"sh", "-c", `sleep 300 & exec "$0"`, fakemodel}
}

// checkPinned checks that each ready replica of st, and its child, runs on
// the CPUs status shows for it, with the thread variables at their count.
func checkPinned(t *testing.T, st control.Status) {
	t.Helper()
	for _, r := range st.Replicas {
		if r.CPUs == "" {
			t.Errorf("%s: no cpus in status --json", r.Name)
			continue
		}
		if got := procField(t, "/proc/"+strconv.Itoa(r.Pid)+"/status", "Cpus_allowed_list"); got != r.CPUs {
			t.Errorf("%s (pid %d): Cpus_allowed_list %s, status says %s", r.Name, r.Pid, got, r.CPUs)
		}
		kids := childrenOf(r.Pid)
		if len(kids) == 0 {
			t.Errorf("%s (pid %d): no child found", r.Name, r.Pid)
		}
		for _, k := range kids {
			if got := procField(t, "/proc/"+strconv.Itoa(k)+"/status", "Cpus_allowed_list"); got != r.CPUs {
				t.Errorf("%s's child %d: Cpus_allowed_list %s, want %s", r.Name, k, got, r.CPUs)
			}
		}
		n := strconv.Itoa(len(expandCPUs(r.CPUs)))
		env := environ(t, r.Pid)
		for _, k := range []string{"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "ORT_NUM_THREADS"} {
			if !slices.Contains(env, k+"="+n) {
				t.Errorf("%s: no %s=%s in its environment", r.Name, k, n)
			}
		}
	}
}

// TestCPUsAuto: with --cpus auto, two replicas get disjoint halves of
// mattingctl's CPUs (a child each forks too), the thread variables at
// their size, and no thread of mattingctl is left pinned; so do their
// successors after a rolling restart.
func TestCPUsAuto(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "ORT_NUM_THREADS"} {
		if _, ok := os.LookupEnv(k); ok {
			t.Skipf("%s is set in the test's environment: mattingctl would keep it", k)
		}
	}
	mask := ownCPUs(t)
	if len(mask) < 2 {
		t.Skip("splitting CPUs between 2 replicas needs at least 2 in the affinity mask")
	}
	in := start(t, 2, append([]string{"--cpus", "auto", "--"}, forkingModel()...)...)
	st := in.waitReady(2)
	checkPinned(t, st)
	var union []int
	sizes := map[int]bool{}
	for _, r := range st.Replicas {
		set := expandCPUs(r.CPUs)
		sizes[len(set)] = true
		for _, c := range set {
			if slices.Contains(union, c) {
				t.Errorf("CPU %d is given to two replicas: %s", c, r.CPUs)
			}
			union = append(union, c)
		}
	}
	slices.Sort(union)
	if !slices.Equal(union, mask) || len(sizes) > 2 {
		t.Errorf("replicas got %s and %s, want an even split of %s", st.Replicas[0].CPUs, st.Replicas[1].CPUs, replica.FormatCPUs(mask))
	}
	checkUnpinned(t, in.cmd.Process.Pid, replica.FormatCPUs(mask))
	table, _, _ := in.ctl("status")
	if !strings.Contains(table, "CPUS") || !strings.Contains(table, st.Replicas[1].CPUs) {
		t.Errorf("status shows no CPUS column:\n%s", table)
	}

	// The successors of a rolling restart run on their replica's CPUs.
	if _, errOut, code := in.ctl("restart"); code != 0 {
		t.Fatalf("restart: exit %d: %s", code, errOut)
	}
	after := in.waitReady(2)
	for i, r := range after.Replicas {
		if r.Pid == st.Replicas[i].Pid || r.CPUs != st.Replicas[i].CPUs {
			t.Errorf("%s after restart: pid %d CPUs %s; before: pid %d CPUs %s", r.Name, r.Pid, r.CPUs, st.Replicas[i].Pid, st.Replicas[i].CPUs)
		}
	}
	checkPinned(t, after)
	checkUnpinned(t, in.cmd.Process.Pid, replica.FormatCPUs(mask))
}

// checkUnpinned checks that every thread of pid runs on mask.
func checkUnpinned(t *testing.T, pid int, mask string) {
	t.Helper()
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of mattingctl (pid %d): %v", pid, err)
	}
	for _, task := range tasks {
		if got := procField(t, task, "Cpus_allowed_list"); got != mask {
			t.Errorf("mattingctl thread %s: Cpus_allowed_list %s, want %s: left pinned", task, got, mask)
		}
	}
}

func expandCPUs(list string) []int {
	var cpus []int
	for _, part := range strings.Split(list, ",") {
		lo, hi, ok := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if ok {
			b, _ = strconv.Atoi(hi)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// TestCPUsAutoShared: three replicas on two CPUs share them, one each,
// round robin, and up warns that they do; a scale to four warns again,
// and the new replica gets its set by its number.
func TestCPUsAutoShared(t *testing.T) {
	t.Parallel()
	mask := ownCPUs(t)
	if len(mask) < 2 {
		t.Skip("needs at least 2 CPUs in the affinity mask")
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		t.Skip("taskset (util-linux) is not installed")
	}
	two := strconv.Itoa(mask[0]) + "," + strconv.Itoa(mask[1])
	port := testutil.FreePorts(t, 3+8)
	home := t.TempDir()
	in := launch(t, taskset, home, port, append([]string{"-c", two, mattingctl, "up", "--port", strconv.Itoa(port), "--host", "127.0.0.1",
		"--admin", "127.0.0.1:0", "--replicas", "3", "--cpus", "auto", "--"}, forkingModel()...)...)
	st := in.waitReady(3)
	checkPinned(t, st)
	want := []string{strconv.Itoa(mask[0]), strconv.Itoa(mask[1]), strconv.Itoa(mask[0])}
	for i, r := range st.Replicas {
		if r.CPUs != want[i] {
			t.Errorf("%s: CPUs %s, want %s", r.Name, r.CPUs, want[i])
		}
	}
	if w := "3 replicas on 2 CPU sets (--cpus): replicas share cores"; !strings.Contains(in.stderr.String(), w) {
		t.Errorf("up did not warn %q", w)
	}
	out, errOut, code := in.ctl("scale", "4")
	if code != 0 || !strings.Contains(errOut, "4 replicas on 2 CPU sets") {
		t.Errorf("scale 4: exit %d, stderr %q, want a warning that replicas share cores\n%s", code, errOut, out)
	}
	st = in.waitReady(4)
	if r := st.Replicas[3]; r.CPUs != strconv.Itoa(mask[1]) {
		t.Errorf("replica-4 after scale: CPUs %s, want %d", r.CPUs, mask[1])
	}
	checkPinned(t, st)
}
