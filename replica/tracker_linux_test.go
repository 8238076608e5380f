package replica

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// cgroupTracker opens a tracker that uses a cgroup, or skips the test
// where none can be created (no cgroup v2, no delegation).
func cgroupTracker(t *testing.T, dir, name string) *Tracker {
	t.Helper()
	tr := openTracker(t, dir, name)
	if tr.Cgroup() == "" {
		t.Skip("no cgroup v2 can be created here; the tracker uses process groups")
	}
	return tr
}

// A grandchild that called setsid has left the replica's process group;
// the replica's cgroup still holds it, and Stop kills it.
func TestStopKillsASetsidGrandchild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := cgroupTracker(t, dir, "setsid")
	p, gc := startTracked(t, tr, "setsidchild")
	if pg, _ := syscall.Getpgid(gc); pg == p.Pid() {
		t.Fatalf("grandchild %d is in the replica's process group: the test proves nothing", gc)
	}
	leaf := readState(t, dir, "setsid").Groups[0].Cgroup
	if !strings.HasPrefix(leaf, tr.Cgroup()+"/replica-1-") {
		t.Fatalf("replica's cgroup = %q, want one under %s", leaf, tr.Cgroup())
	}
	if err := p.Stop(0); err != nil {
		t.Fatal(err)
	}
	if running(gc) {
		t.Errorf("setsid'd grandchild %d still running after Stop", gc)
	}
	if _, err := os.Stat(leaf); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("replica's cgroup %s left after Stop: %v", leaf, err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tr.Cgroup()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("instance cgroup %s left after Close: %v", tr.Cgroup(), err)
	}
}

// After its supervisor was killed, the next tracker of the name kills the
// dead instance's cgroup: a setsid'd grandchild, which no process group
// leads to, is swept too.
func TestSweepKillsADeadInstancesCgroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr1 := cgroupTracker(t, dir, "deadcg")
	p, gc := startTracked(t, tr1, "setsidchild")
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, p, exitWait)
	if !running(gc) {
		t.Fatal("the grandchild died with the leader: nothing to sweep")
	}
	tr2 := openTracker(t, dir, "deadcg")
	if running(gc) {
		t.Errorf("setsid'd grandchild %d still running after the next tracker's sweep", gc)
	}
	if _, err := os.Stat(tr1.Cgroup()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dead instance's cgroup %s left after the sweep: %v", tr1.Cgroup(), err)
	}
	if tr2.Cgroup() == tr1.Cgroup() {
		t.Errorf("both instances got cgroup %s", tr1.Cgroup())
	}
}

// A state file naming a directory that is not a cgroup is not written to.
func TestSweepWritesOnlyToCgroups(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fake := filepath.Join(dir, "mattingctl-fake")
	if err := os.Mkdir(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	writeState(t, dir, "fake", stateRecord{Cgroup: fake})
	openTracker(t, dir, "fake")
	if _, err := os.Stat(filepath.Join(fake, "cgroup.kill")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the sweep wrote %s/cgroup.kill: %v", fake, err)
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/sys/fs/cgroup\040v2`); got != "/sys/fs/cgroup v2" {
		t.Errorf("unescapeMount = %q", got)
	}
}

// A cgroup that a SIGKILLed instance left empty is removed by the next
// instance of any name; a live instance's is not.
func TestNewInstanceCgroupTidiesDeadEmptyOnes(t *testing.T) {
	t.Parallel()
	parent, err := ownCgroupDir()
	if err != nil {
		t.Skip(err)
	}
	self, err := procStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(parent, "mattingctl-tidy.0.1.1") // pid 0 is no process
	live := filepath.Join(parent, "mattingctl-tidy."+strconv.Itoa(os.Getpid())+"."+strconv.FormatInt(self, 10)+".999999")
	for _, d := range []string{dead, live} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Skipf("cannot create cgroups here: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Rmdir(d) })
	}
	cg, err := newInstanceCgroup("tidy")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { _ = removeCgroup(cg) })
	if _, err := os.Stat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a dead instance's empty cgroup %s was left: %v", dead, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live instance's cgroup %s was removed: %v", live, err)
	}
}
