package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// reapersOf returns the reaper processes of the instances with state
// directory home: mattingctl run as `__reaper HOME/NAME.procs.json ...`.
func reapersOf(home string) []int {
	names, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && args[1] == "__reaper" && strings.HasPrefix(args[2], home+"/") {
			pid, _ := strconv.Atoi(strings.Split(n, "/")[2])
			if alive(pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// sockets lists the socket descriptors process pid holds.
func sockets(pid int) []string {
	fds, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/fd/*")
	var out []string
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && strings.HasPrefix(link, "socket:") {
			out = append(out, filepath.Base(fd)+" -> "+link)
		}
	}
	return out
}

// TestKill9LeavesNoProcessOfTheInstance is the target: after kill
// -9 of mattingctl whose 2 replicas each forked a setsid'd daemon, no
// process of the instance is left 5 s later, without waiting for the next
// `up`: the reaper sweeps them, then exits itself. The reaper holds no
// socket (the control socket, the proxy's or the replicas' ports).
func TestKill9LeavesNoProcessOfTheInstance(t *testing.T) {
	t.Parallel()
	const replicas, within = 2, 5 * time.Second
	home := t.TempDir()
	port := testutil.FreePorts(t, replicas+8)
	tag := t.Name() + "-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	in := upTagged(t, home, port, replicas, tag, "testdata/leftovers/setsidserver.sh")
	st := in.waitReady(replicas)
	if why := withoutCgroup(in); why != "" {
		t.Skipf("a setsid'd process escapes process groups; without a cgroup (%s) it is a documented limit", why)
	}
	started := tagged(tag)
	daemons := 0
	for _, pid := range started {
		if pg, _ := syscall.Getpgid(pid); pg == pid && !isReplicaPid(st.Replicas, pid) {
			daemons++ // a session and group of its own, as setsid makes
		}
	}
	if daemons < replicas {
		t.Fatalf("%d setsid'd daemons among the instance's processes (%s), want %d: nothing to test", daemons, describe(started), replicas)
	}
	reapers := reapersOf(home)
	if len(reapers) != 1 {
		t.Fatalf("reapers of the instance: %v, want one", reapers)
	}
	if socks := sockets(reapers[0]); len(socks) > 0 {
		t.Errorf("the reaper holds sockets: %s", strings.Join(socks, ", "))
	}

	if err := in.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testutil.WaitFor(t, within, "no process of the instance", func() bool {
		return len(tagged(tag)) == 0 && len(reapersOf(home)) == 0
	})
	t.Logf("%d processes (%d setsid'd daemons) and the reaper gone %s after kill -9 of mattingctl",
		len(started), daemons, time.Since(killed).Round(time.Millisecond))
	in.wait(10 * time.Second)
	for _, r := range st.Replicas {
		if !portFree(r.Port) {
			t.Errorf("port %d still held after the sweep", r.Port)
		}
	}
	if !strings.Contains(in.stderr.String(), "mattingctl.reaper: mattingctl died without stopping its replicas; killed what they left running") {
		t.Errorf("the reaper did not say what it did:\n%s", in.stderr.String())
	}
	// The next up of the name finds nothing to sweep.
	next := startIn(t, home, 1, "--", fakemodel)
	next.waitReady(1)
	if strings.Contains(next.stderr.String(), "killed processes left by a dead instance") {
		t.Errorf("the next up had to sweep:\n%s", next.stderr.String())
	}
}

// isReplicaPid reports whether pid is one of the replicas' own processes.
func isReplicaPid(rs []control.ReplicaStatus, pid int) bool {
	for _, r := range rs {
		if r.Pid == pid {
			return true
		}
	}
	return false
}

// TestDownStopsTheReaper: a clean stop leaves no reaper behind.
func TestDownStopsTheReaper(t *testing.T) {
	t.Parallel()
	in := start(t, 2, "--", fakemodel)
	in.waitReady(2)
	if n := len(reapersOf(in.home)); n != 1 {
		t.Fatalf("%d reapers running, want one", n)
	}
	if _, errOut, code := in.ctl("down"); code != 0 {
		t.Fatalf("down: exit %d: %s", code, errOut)
	}
	in.wait(30 * time.Second)
	if r := reapersOf(in.home); len(r) > 0 {
		t.Errorf("reaper %v still runs after down", r)
	}
}
