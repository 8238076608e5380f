package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
	"github.com/mattingctl/mattingctl/supervisor"
)

// pidsCgroup creates a cgroup whose pids.max is limit, on cgroup v2 where
// its pids controller is available, else on a cgroup v1 pids hierarchy
// (hosts that mount both, as this one), and removes it when the test ends,
// killing what is left in it. It skips the test, saying why, where no such
// cgroup can be made (not root, no pids controller), unless
// MATTINGCTL_REQUIRE_E2E is set, as CI sets it.
func pidsCgroup(t *testing.T, limit int) string {
	t.Helper()
	dir, why := makePidsCgroup(t.Name())
	if dir == "" {
		if os.Getenv("MATTINGCTL_REQUIRE_E2E") != "" {
			t.Fatalf("cannot make a cgroup with a pids limit here (%s), and MATTINGCTL_REQUIRE_E2E is set", why)
		}
		t.Skipf("cannot make a cgroup with a pids limit here: %s", why)
	}
	t.Cleanup(func() {
		for range 100 {
			pids := cgroupPids(dir)
			if len(pids) == 0 {
				break
			}
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := syscall.Rmdir(dir); err != nil {
			t.Logf("removing cgroup %s: %v", dir, err)
		}
	})
	setPidsMax(t, dir, limit)
	return dir
}

// setPidsMax sets the pids.max of cgroup dir.
func setPidsMax(t *testing.T, dir string, limit int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.Itoa(limit)), 0); err != nil {
		t.Fatalf("setting pids.max: %v", err)
	}
}

// makePidsCgroup creates the cgroup, or says why it cannot.
func makePidsCgroup(name string) (dir, why string) {
	if os.Geteuid() != 0 {
		return "", "the test needs root to create a cgroup"
	}
	v2, v1 := "", ""
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, _ := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 {
			continue
		}
		switch {
		case tail[0] == "cgroup2" && v2 == "":
			v2 = fields[4]
		case tail[0] == "cgroup" && strings.Contains(","+tail[2]+",", ",pids,"):
			v1 = fields[4]
		}
	}
	leaf := fmt.Sprintf("mattingctl-e2e-%s-%d", regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(name, "-"), os.Getpid())
	var tried []string
	if v2 != "" {
		ctl, _ := os.ReadFile(filepath.Join(v2, "cgroup.controllers"))
		if strings.Contains(" "+strings.TrimSpace(string(ctl))+" ", " pids ") {
			// The root cgroup may enable controllers for its children
			// whatever processes it holds.
			_ = os.WriteFile(filepath.Join(v2, "cgroup.subtree_control"), []byte("+pids"), 0)
			d := filepath.Join(v2, leaf)
			if err := os.Mkdir(d, 0o755); err == nil {
				if _, err := os.Stat(filepath.Join(d, "pids.max")); err == nil {
					return d, ""
				}
				_ = syscall.Rmdir(d)
				tried = append(tried, "cgroup v2 at "+v2+" does not enable pids for its children")
			} else {
				tried = append(tried, fmt.Sprintf("cgroup v2 at %s: %v", v2, err))
			}
		} else {
			tried = append(tried, "cgroup v2 at "+v2+" has no pids controller")
		}
	}
	if v1 != "" {
		d := filepath.Join(v1, leaf)
		if err := os.Mkdir(d, 0o755); err == nil {
			return d, ""
		} else {
			tried = append(tried, fmt.Sprintf("cgroup v1 pids at %s: %v", v1, err))
		}
	}
	if len(tried) == 0 {
		tried = append(tried, "no cgroup file system is mounted")
	}
	return "", strings.Join(tried, "; ")
}

// cgroupPids lists the processes in cgroup dir.
func cgroupPids(dir string) []int {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupNumber reads a number from file of cgroup dir (pids.current).
func cgroupNumber(t *testing.T, dir, file string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s/%s: %v", dir, file, err)
	}
	return n
}

// startInCgroup is start, with mattingctl in cgroup dir from its first
// instruction: a shell moves itself there and execs it.
func startInCgroup(t *testing.T, dir string, replicas int, args ...string) *instance {
	t.Helper()
	home := t.TempDir()
	port := testutil.FreePorts(t, replicas+8)
	full := append([]string{"-c", `echo $$ > "$CGROUP_PROCS" && exec "$0" "$@"`, mattingctl,
		"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0", "--replicas", strconv.Itoa(replicas)}, args...)
	t.Setenv("CGROUP_PROCS", filepath.Join(dir, "cgroup.procs"))
	return launch(t, "/bin/sh", home, port, full...)
}

// TestPidsLimitScaleRefused is the repro: under pids.max 60, `up
// -r 2` then `scale 40` ended in "runtime/cgo: pthread_create failed" and
// SIGABRT, every replica dead and the control socket stale. Now the scale
// is refused with one line naming the limit, mattingctl and its replicas
// keep running, a scale that fits is applied, and with the cgroup full a
// replica's restart fails at fork and is reported as such, without
// crashing mattingctl, until tasks are free again.
func TestPidsLimitScaleRefused(t *testing.T) {
	dir := pidsCgroup(t, 60)
	in := startInCgroup(t, dir, 2, "--", fakemodel)
	in.waitReady(2)
	// Served requests first: a replica starts threads as it serves, and
	// the refusal measures the replicas as they run.
	for i := 0; i < 20; i++ {
		if _, err := get(in.url("/")); err != nil {
			t.Fatalf("request before the scale: %v", err)
		}
	}
	time.Sleep(time.Second) // the sampler's readings are a second old at most
	t.Logf("pids.current %d of 60 with 2 replicas", cgroupNumber(t, dir, "pids.current"))

	_, errOut, code := in.ctl("scale", "40")
	t.Logf("scale 40: exit %d: %s", code, strings.TrimSpace(errOut))
	if code == 0 {
		t.Fatalf("scale 40 under pids.max 60 succeeded")
	}
	line := strings.TrimSpace(errOut)
	for _, want := range []string{"cannot scale to 40", dir + " pids.max allows 60 tasks", "in use", "TasksMax", "--pids-limit"} {
		if !strings.Contains(line, want) {
			t.Errorf("scale 40's message lacks %q: %s", want, line)
		}
	}
	if strings.Count(line, "\n") > 0 {
		t.Errorf("scale 40's message is more than one line:\n%s", line)
	}
	st := in.waitReady(2)
	for i := 0; i < 10; i++ {
		if _, err := get(in.url("/")); err != nil {
			t.Fatalf("request after the refused scale: %v", err)
		}
	}

	// What the message says fits is applied.
	if m := regexp.MustCompile(`at most (\d+) replicas`).FindStringSubmatch(line); m != nil {
		if _, errOut, code := in.ctl("scale", m[1]); code != 0 {
			t.Fatalf("scale %s, which the refusal said fits: exit %d: %s", m[1], code, errOut)
		}
		n, _ := strconv.Atoi(m[1])
		st = in.waitReady(n)
		t.Logf("scale %s applied: pids.current %d of 60", m[1], cgroupNumber(t, dir, "pids.current"))
	} else {
		t.Logf("no room for another replica; the refusal said so")
	}

	// The cgroup full (its limit lowered to what is in use, as when
	// replicas take more threads or another process of the unit forks): a
	// killed replica cannot be forked again.
	victim := st.Replicas[0]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the killed replica to be reaped", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", victim.Pid))
		return err != nil
	})
	full := cgroupNumber(t, dir, "pids.current")
	setPidsMax(t, dir, full) // before the restart, 500 ms after the crash
	var reported string
	testutil.WaitFor(t, 20*time.Second, "the failed restart to be reported", func() bool {
		select {
		case <-in.done:
			t.Fatalf("mattingctl exited with the cgroup full (%v):\n%s", in.err, in.stderr.String())
		default:
		}
		r, err := in.tryStatus()
		if err != nil || len(r.Replicas) == 0 {
			return false
		}
		reported = r.Replicas[0].Error
		return strings.Contains(reported, "pids.max")
	})
	t.Logf("replica-1 with the cgroup full: %s", reported)
	if !strings.Contains(reported, "resource temporarily unavailable") {
		t.Errorf("the start error does not say the fork failed: %s", reported)
	}
	time.Sleep(2 * time.Second) // a few retries, each refused
	select {
	case <-in.done:
		t.Fatalf("mattingctl exited with the cgroup full (%v)", in.err)
	default:
	}

	// Room to fork, but not for the threads a replica starts: it dies
	// starting, which is the limit's doing, retried, not a broken command
	// given up on.
	setPidsMax(t, dir, full+2)
	testutil.WaitFor(t, 30*time.Second, "a start that died for want of threads to be reported", func() bool {
		r := in.status().Replicas[0]
		reported = r.Error
		if r.State == "failed" {
			t.Fatalf("replica-1 failed for good with the cgroup full: %s", r.Error)
		}
		return strings.Contains(reported, "refused to fork its threads or processes")
	})
	t.Logf("replica-1 with room for one more task: %s", reported)

	t.Logf("pids.max back to 60 from %d", full+2)
	setPidsMax(t, dir, 60)
	in.waitReady(len(st.Replicas))
	for i := 0; i < 10; i++ {
		if _, err := get(in.url("/")); err != nil {
			t.Fatalf("request once tasks are free again: %v", err)
		}
	}
	for _, line := range strings.Split(in.stderr.String(), "\n") {
		// The replicas' lines ("replica-1 | ...") may say so: theirs.
		if !strings.Contains(line, " | ") && (strings.Contains(line, "pthread_create failed") || strings.Contains(line, "failed to create new OS thread")) {
			t.Errorf("mattingctl ran out of threads: %s", line)
		}
	}
	if _, errOut, code := in.ctl("down"); code != 0 {
		t.Fatalf("down: exit %d: %s", code, errOut)
	}
	if code := in.wait(30 * time.Second); code != 0 {
		t.Errorf("mattingctl exited %d after down", code)
	}
}

// TestPidsLimitUpRefused: replicas that cannot all start under the limit,
// even at one task each, are refused before any starts.
func TestPidsLimitUpRefused(t *testing.T) {
	dir := pidsCgroup(t, 60)
	in := startInCgroup(t, dir, 80, "--", fakemodel)
	if code := in.wait(30 * time.Second); code == 0 {
		t.Fatal("up -r 80 under pids.max 60 succeeded")
	}
	out := in.stderr.String()
	if !strings.Contains(out, "--replicas 80: the cgroup "+dir+" pids.max allows 60 tasks") {
		t.Errorf("up -r 80's message does not name the limit:\n%s", out)
	}
	if strings.Contains(out, "starting replicas") {
		t.Errorf("replicas were started:\n%s", out)
	}
}

// TestPidsLimitFullUnderLoad: with the cgroup full, mattingctl under load
// (64 clients, `status` calls) needs threads it cannot create; it used to
// abort ("runtime/cgo: pthread_create failed"), leaving the control
// socket stale. It must run on, answer `status`, and serve again once
// tasks are free. Replicas that cannot start threads may die meanwhile.
func TestPidsLimitFullUnderLoad(t *testing.T) {
	dir := pidsCgroup(t, 200)
	in := startInCgroup(t, dir, 2, "--", fakemodel)
	in.waitReady(2)
	full := cgroupNumber(t, dir, "pids.current")
	setPidsMax(t, dir, full)
	l := startLoad(in.url("/?sleep=1ms"), 64)
	for i := 0; i < 10; i++ {
		time.Sleep(500 * time.Millisecond)
		if _, err := in.tryStatus(); err != nil {
			l.finish()
			t.Fatalf("status with the cgroup full (pids.max %d): %v\n%s", full, err, in.stderr.String())
		}
	}
	ok, failures, _ := l.finish()
	t.Logf("with the cgroup full at %d tasks: %d answered, %d failed", full, ok, len(failures))
	select {
	case <-in.done:
		t.Fatalf("mattingctl exited with the cgroup full (%v)", in.err)
	default:
	}
	setPidsMax(t, dir, 200)
	// Replicas that died while the cgroup was full may be in their
	// longest crash backoff (supervisor.DefaultBackoffMax, 30 s) when the
	// limit is raised: allow for it, and their start.
	testutil.WaitFor(t, supervisor.DefaultBackoffMax+30*time.Second, "2 ready replicas once tasks are free", func() bool {
		st, err := in.tryStatus()
		return err == nil && readyCount(st) == 2
	})
	if _, err := get(in.url("/")); err != nil {
		t.Fatalf("request once tasks are free again: %v", err)
	}
	for _, line := range strings.Split(in.stderr.String(), "\n") {
		if !strings.Contains(line, " | ") && (strings.Contains(line, "pthread_create failed") || strings.Contains(line, "failed to create new OS thread")) {
			t.Errorf("mattingctl ran out of threads: %s", line)
		}
	}
}
