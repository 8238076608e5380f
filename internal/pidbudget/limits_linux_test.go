package pidbudget

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystem lays out files (path -> content) under a temporary root.
func fakeSystem(t *testing.T, files map[string]string) system {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return system{root: root, ids: func() (int, int) { return 0, 0 }}
}

const (
	mountsV2     = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	mountsHybrid = "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n" +
		"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
)

func names(ls []Limit) string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Name)
	}
	return strings.Join(out, "; ")
}

func TestLimitsCgroupV2Ancestors(t *testing.T) {
	s := fakeSystem(t, map[string]string{
		"/proc/self/mountinfo": mountsV2,
		"/proc/self/cgroup":    "0::/system.slice/model.service\n",
		// The unit's TasksMax and the slice's; the root has no pids.max.
		"/sys/fs/cgroup/system.slice/model.service/pids.max":     "60\n",
		"/sys/fs/cgroup/system.slice/model.service/pids.current": "20\n",
		"/sys/fs/cgroup/system.slice/pids.max":                   "max\n",
		"/sys/fs/cgroup/system.slice/pids.current":               "300\n",
	})
	ls := s.limits()
	if len(ls) != 1 {
		t.Fatalf("limits = %+v, want the unit's only (the slice's is max)", ls)
	}
	if l := ls[0]; l.Name != "cgroup /sys/fs/cgroup/system.slice/model.service pids.max" || l.Max != 60 || l.Used != 20 || !strings.Contains(l.Raise, "TasksMax") {
		t.Fatalf("limit = %+v", l)
	}
}

func TestLimitsCgroupV2ParentTighter(t *testing.T) {
	s := fakeSystem(t, map[string]string{
		"/proc/self/mountinfo":                      mountsV2,
		"/proc/self/cgroup":                         "0::/pod/ctr\n",
		"/sys/fs/cgroup/pod/ctr/pids.max":           "1000\n",
		"/sys/fs/cgroup/pod/ctr/pids.current":       "10\n",
		"/sys/fs/cgroup/pod/pids.max":               "100\n",
		"/sys/fs/cgroup/pod/pids.current":           "90\n",
		"/sys/fs/cgroup/unrelated/pids.max":         "1\n",
		"/sys/fs/cgroup/unrelated/pids.current":     "1\n",
		"/sys/fs/cgroup/pod/ctr/child/pids.max":     "1\n",
		"/sys/fs/cgroup/pod/ctr/child/pids.current": "1\n",
	})
	ls := s.limits()
	if len(ls) != 2 {
		t.Fatalf("limits = %s, want the container's and the pod's", names(ls))
	}
	if l, _ := Tightest(ls); l.Name != "cgroup /sys/fs/cgroup/pod pids.max" || l.Free() != 10 {
		t.Fatalf("tightest = %+v, want the pod's with 10 free", l)
	}
}

// A hybrid host (this one's kind): pids is a v1 controller, cgroup v2 has
// none of it.
func TestLimitsCgroupV1Pids(t *testing.T) {
	s := fakeSystem(t, map[string]string{
		"/proc/self/mountinfo":                  mountsHybrid,
		"/proc/self/cgroup":                     "9:name=systemd:/\n8:pids:/test\n1:cpu:/\n0::/\n",
		"/sys/fs/cgroup/pids/test/pids.max":     "60\n",
		"/sys/fs/cgroup/pids/test/pids.current": "24\n",
	})
	ls := s.limits()
	if len(ls) != 1 || ls[0].Name != "cgroup /sys/fs/cgroup/pids/test pids.max" || ls[0].Max != 60 || ls[0].Used != 24 {
		t.Fatalf("limits = %+v", ls)
	}
}

// A container sees only its own subtree: /proc/self/cgroup names the
// host's path, the mount's root says which part of it is shown.
func TestLimitsContainerView(t *testing.T) {
	s := fakeSystem(t, map[string]string{
		"/proc/self/mountinfo":            "30 23 0:26 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
		"/proc/self/cgroup":               "0::/kubepods/pod1/ctr\n",
		"/sys/fs/cgroup/ctr/pids.max":     "128\n",
		"/sys/fs/cgroup/ctr/pids.current": "3\n",
	})
	ls := s.limits()
	if len(ls) != 1 || ls[0].Name != "cgroup /sys/fs/cgroup/ctr pids.max" {
		t.Fatalf("limits = %+v", ls)
	}
}

func TestLimitsNone(t *testing.T) {
	s := fakeSystem(t, map[string]string{
		"/proc/self/mountinfo": mountsV2,
		"/proc/self/cgroup":    "0::/\n",
	})
	if ls := s.limits(); len(ls) != 0 {
		t.Fatalf("limits = %+v, want none", ls)
	}
	s = fakeSystem(t, map[string]string{}) // no /proc at all
	if ls := s.limits(); len(ls) != 0 {
		t.Fatalf("limits without /proc = %+v, want none", ls)
	}
}

func TestLimitsNproc(t *testing.T) {
	files := map[string]string{
		"/proc/self/mountinfo": mountsV2,
		"/proc/self/cgroup":    "0::/\n",
		"/proc/10/status":      "Name:\tmattingctl\nUid:\t1000\t1000\t1000\t1000\nThreads:\t9\n",
		"/proc/11/status":      "Name:\tpython3\nUid:\t1000\t1000\t1000\t1000\nThreads:\t30\n",
		"/proc/12/status":      "Name:\tsshd\nUid:\t0\t0\t0\t0\nThreads:\t1\n",
		// Effective 1000 but real 0: counted for root, not for 1000.
		"/proc/13/status": "Name:\tsetuid\nUid:\t0\t1000\t1000\t1000\nThreads:\t5\n",
	}
	s := fakeSystem(t, files)
	s.ids = func() (int, int) { return 1000, 1000 }
	s.nproc = func() (uint64, bool) { return 200, true }
	ls := s.limits()
	if len(ls) != 1 {
		t.Fatalf("limits = %+v", ls)
	}
	if l := ls[0]; l.Name != "RLIMIT_NPROC (ulimit -u) of uid 1000" || l.Max != 200 || l.Used != 39 || !strings.Contains(l.Raise, "ulimit -u") {
		t.Fatalf("limit = %+v, want 39 of 200 in use", l)
	}
	s.ids = func() (int, int) { return 0, 0 }
	if ls := s.limits(); len(ls) != 0 {
		t.Fatalf("root has RLIMIT_NPROC enforced: %+v", ls)
	}
	s.ids = func() (int, int) { return 1000, 1000 }
	s.nproc = func() (uint64, bool) { return 0, false }
	if ls := s.limits(); len(ls) != 0 {
		t.Fatalf("unlimited ulimit -u read as a limit: %+v", ls)
	}
}

// TestLimitsHere reads this machine's limits: whatever they are, reading
// them must not fail or report nonsense.
func TestLimitsHere(t *testing.T) {
	for _, l := range Limits() {
		t.Logf("%s: %d of %d in use", l.Name, l.Used, l.Max)
		if l.Max <= 0 || l.Used < 0 || l.Name == "" || l.Raise == "" {
			t.Errorf("limit = %+v", l)
		}
	}
}

func TestRefused(t *testing.T) {
	s := fakeSystem(t, map[string]string{
		"/proc/self/mountinfo":                      mountsHybrid,
		"/proc/self/cgroup":                         "8:pids:/unit/ctr\n0::/\n",
		"/sys/fs/cgroup/pids/unit/ctr/pids.events":  "max 3\n",
		"/sys/fs/cgroup/pids/unit/pids.events":      "max 4\n",
		"/sys/fs/cgroup/pids/other/pids.events":     "max 100\n",
		"/sys/fs/cgroup/pids/unit/ctr/pids.max":     "10\n",
		"/sys/fs/cgroup/pids/unit/ctr/pids.current": "10\n",
	})
	if got := s.refused(); got != 7 {
		t.Fatalf("refused = %d, want 3+4 from the cgroup and its parent", got)
	}
	if got := fakeSystem(t, map[string]string{}).refused(); got != 0 {
		t.Fatalf("refused without /proc = %d", got)
	}
}
