package replica

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// cpusAllowed reads Cpus_allowed_list from a /proc status file.
func cpusAllowed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s has no Cpus_allowed_list", path)
	return ""
}

// TestStartPinsProcessAndChildren starts a replica that forks a child and
// checks that both run on the replica's CPUs only, while every thread of
// this process is back on the CPUs it had.
func TestStartPinsProcessAndChildren(t *testing.T) {
	allowed, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(allowed) < 2 {
		t.Skip("pinning to a subset needs at least 2 CPUs in the affinity mask")
	}
	want := FormatCPUs(allowed)
	cpus := allowed[len(allowed)-1:]
	c := newCapture()
	spec := Spec{ID: 1, Port: 1, Command: helperCommand("spawn"), Env: helperEnv, CPUs: cpus}
	p, err := Start(spec, c.out)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	var gpid int
	testutil.WaitFor(t, 10*time.Second, "the child's child to start", func() bool {
		_, after, ok := strings.Cut(c.stdout.String(), "grandchild ")
		if !ok {
			return false
		}
		n, _ := fmt.Sscanf(after, "%d", &gpid)
		return n == 1
	})
	for _, pid := range []int{p.Pid(), gpid} {
		if got := cpusAllowed(t, "/proc/"+strconv.Itoa(pid)+"/status"); got != FormatCPUs(cpus) {
			t.Errorf("pid %d: Cpus_allowed_list %q, want %q", pid, got, FormatCPUs(cpus))
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if got := cpusAllowed(t, "/proc/self/task/"+task.Name()+"/status"); got != want {
			t.Errorf("thread %s of the test process: Cpus_allowed_list %q, want %q (left pinned)", task.Name(), got, want)
		}
	}
}

func TestStartRefusesCPUsOutsideTheMachine(t *testing.T) {
	c := newCapture()
	spec := Spec{ID: 1, Port: 1, Command: helperCommand("sleep"), Env: helperEnv, CPUs: []int{1000}}
	p, err := Start(spec, c.out)
	if err == nil {
		_ = p.Kill()
		t.Fatal("Start pinned to CPU 1000 succeeded")
	}
	if !strings.Contains(err.Error(), "CPUs 1000") {
		t.Errorf("error %q does not name the CPUs", err)
	}
}
