package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// Processes of a dead instance must not outlive it and
// block the next `up`. Every process a test instance starts, at any depth,
// carries a tag in its environment, so the test can find them all.

const (
	tagEnv = "MATTINGCTL_E2E_TAG"
	// nextUpWithin is the target: after kill -9 of mattingctl the
	// next `up` of the name is ready within this, on a machine where the
	// first was ready within half of it.
	nextUpWithin = 5 * time.Second
)

// tagged returns the live (not zombie) processes whose environment holds
// tag, sorted.
func tagged(tag string) []int {
	want := []byte(tagEnv + "=" + tag + "\x00")
	names, _ := filepath.Glob("/proc/[0-9]*/environ")
	var pids []int
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || !bytes.Contains(append(b, 0), want) {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(n, "/")[2])
		if err == nil && alive(pid) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// describe names pids with their commands, for a failure message.
func describe(pids []int) string {
	var parts []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		parts = append(parts, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))))
	}
	return strings.Join(parts, ", ")
}

// upTagged starts `mattingctl up` on port with every process it starts
// tagged, and kills whatever carries the tag when the test ends.
func upTagged(t *testing.T, home string, port, replicas int, tag string, command ...string) *instance {
	t.Helper()
	return upTaggedEnv(t, nil, home, port, replicas, tag, command...)
}

// upTaggedEnv is upTagged with env added to mattingctl's environment.
func upTaggedEnv(t *testing.T, env []string, home string, port, replicas int, tag string, command ...string) *instance {
	t.Helper()
	t.Cleanup(func() {
		for _, pid := range tagged(tag) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	args := []string{"up", "--port", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "127.0.0.1:0",
		"--replicas", strconv.Itoa(replicas), "--env", tagEnv + "=" + tag, "--env", "FAKEMODEL=" + fakemodel, "--"}
	return launchEnv(t, env, mattingctl, home, port, append(args, command...)...)
}

// withoutCgroup reports why in runs without a cgroup, from its log, or "".
func withoutCgroup(in *instance) string {
	out := in.stderr.String()
	if i := strings.Index(out, "no cgroup for the replicas"); i >= 0 {
		line, _, _ := strings.Cut(out[i:], "\n")
		return line
	}
	return ""
}

// checkNextUpAfterKill9 is the repro and target: `up` with
// command, kill -9 of mattingctl, then the next `up` of the same name on
// the same ports. It must be ready within nextUpWithin (or twice the time
// the first took, on a machine too busy for the first to be ready in half
// of that: starting the replicas is most of it), answer through
// the proxy, and no process of the first instance may remain; `down` of
// the second must leave none of its own either. needCgroup skips the test
// where the instance has no cgroup (the documented limit of the fallback).
func checkNextUpAfterKill9(t *testing.T, needCgroup bool, command ...string) {
	t.Helper()
	const replicas = 2
	home := t.TempDir()
	port := testutil.FreePorts(t, replicas+8)
	tag1, tag2 := fmt.Sprintf("%s-first-%d", t.Name(), time.Now().UnixNano()), fmt.Sprintf("%s-next-%d", t.Name(), time.Now().UnixNano())

	began := time.Now()
	first := upTagged(t, home, port, replicas, tag1, command...)
	waitReadyLine(t, first)
	firstTook := time.Since(began)
	first.waitReady(replicas)
	if why := withoutCgroup(first); needCgroup && why != "" {
		t.Skipf("a setsid'd process escapes process groups; without a cgroup (%s) it is a documented limit", why)
	}
	started := tagged(tag1)
	if len(started) <= replicas {
		t.Fatalf("the replicas started %d processes (%s): no workers, nothing to test", len(started), describe(started))
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.wait(10 * time.Second)
	left := tagged(tag1)
	t.Logf("after kill -9 of mattingctl: %d of the %d processes it started still run: %s", len(left), len(started), describe(left))

	began = time.Now()
	next := upTagged(t, home, port, replicas, tag2, command...)
	waitReadyLine(t, next)
	took := time.Since(began)
	next.waitReady(replicas)
	sweep := "nothing swept"
	if i := strings.Index(next.stderr.String(), "killed processes left by a dead instance"); i >= 0 {
		sweep, _, _ = strings.Cut(next.stderr.String()[i:], "\n")
	}
	t.Logf("next up ready in %s, the first in %s (%s)", took.Round(time.Millisecond), firstTook.Round(time.Millisecond), sweep)
	if want := max(nextUpWithin, 2*firstTook); took > want {
		t.Errorf("next up took %s to be ready, the first %s; want at most %s", took.Round(time.Millisecond), firstTook.Round(time.Millisecond), want.Round(time.Millisecond))
	}
	if rest := tagged(tag1); len(rest) > 0 {
		t.Errorf("processes of the killed instance still run: %s", describe(rest))
	}
	for i := 0; i < 4; i++ {
		resp, err := client.Get(next.url("/"))
		if err != nil {
			t.Fatalf("request through the next instance: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request through the next instance: %s", resp.Status)
		}
	}

	if _, errOut, code := next.ctl("down"); code != 0 {
		t.Fatalf("down: exit %d: %s", code, errOut)
	}
	next.wait(20 * time.Second)
	if rest := tagged(tag2); len(rest) > 0 {
		t.Errorf("processes of the instance still run after down: %s", describe(rest))
	}
}

// waitReadyLine waits for in to log that every replica is ready, which
// it does as they are (polling status would add its own round trips to
// a time measured).
func waitReadyLine(t *testing.T, in *instance) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "up to log that it is ready", func() bool {
		select {
		case <-in.done:
			t.Fatalf("up exited (%v):\n%s", in.err, in.stderr.String())
		default:
		}
		return strings.Contains(in.stderr.String(), "mattingctl: ready:")
	})
}

func gunicornCommand(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("gunicorn"); err != nil {
		if os.Getenv("MATTINGCTL_REQUIRE_E2E") != "" {
			t.Fatal("gunicorn is missing (apt-get install gunicorn)")
		}
		t.Skip("gunicorn is missing (apt-get install gunicorn)")
	}
	dir, err := filepath.Abs("testdata/leftovers")
	if err != nil {
		t.Fatal(err)
	}
	return []string{"gunicorn", "-w", "4", "--chdir", dir, "-b", "127.0.0.1:{port}", "wsgi:app"}
}

func TestNextUpAfterKill9Gunicorn(t *testing.T) {
	// Not parallel: checkNextUpAfterKill9 times the next up, so it runs alone.
	checkNextUpAfterKill9(t, false, gunicornCommand(t)...)
}

func TestNextUpAfterKill9ForkingScript(t *testing.T) {
	// Not parallel: checkNextUpAfterKill9 times the next up, so it runs alone.
	checkNextUpAfterKill9(t, false, "testdata/leftovers/forkworkers.sh")
}

func TestNextUpAfterKill9SetsidServer(t *testing.T) {
	// Not parallel: checkNextUpAfterKill9 times the next up, so it runs alone.
	checkNextUpAfterKill9(t, true, "testdata/leftovers/setsidserver.sh")
}

func TestNextUpAfterKill9SetsidInheritedSocket(t *testing.T) {
	// Not parallel: checkNextUpAfterKill9 times the next up, so it runs alone.
	checkNextUpAfterKill9(t, true, "python3", "testdata/leftovers/inheritsock.py")
}

// Without a cgroup (MATTINGCTL_CGROUP=off, as on macOS or where Linux
// denies one) the state file's process groups still sweep forked workers.
func TestNextUpAfterKill9WithoutCgroup(t *testing.T) {
	// Not parallel: checkNextUpAfterKill9 times the next up, so it runs alone.
	t.Setenv("MATTINGCTL_CGROUP", "off")
	t.Run("gunicorn", func(t *testing.T) { checkNextUpAfterKill9(t, false, gunicornCommand(t)...) })
	t.Run("forking script", func(t *testing.T) { checkNextUpAfterKill9(t, false, "testdata/leftovers/forkworkers.sh") })
}

// A replica killed with kill -9 whose setsid'd grandchild holds its
// listening socket: the restart must not pass its readiness check against
// the orphan's socket (requests would hang). With a cgroup the orphan dies
// with its replica and the restart serves; without one the restart
// refuses the busy port, waits in backoff (a port held may be freed) and
// says why in status.
func TestReplicaCrashKillsSetsidGrandchild(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"cgroup", "off"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var env []string
			if mode == "off" {
				env = []string{"MATTINGCTL_CGROUP=off"}
			}
			home := t.TempDir()
			port := testutil.FreePorts(t, 9)
			tag := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
			in := upTaggedEnv(t, env, home, port, 1, tag, "python3", "testdata/leftovers/inheritsock.py")
			old := in.waitReady(1).Replicas[0]
			if mode == "cgroup" && withoutCgroup(in) != "" {
				t.Skipf("no cgroup here: %s", withoutCgroup(in))
			}
			orphans := tagged(tag)
			if err := syscall.Kill(old.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if mode == "off" {
				testutil.WaitFor(t, 20*time.Second, "the replica to wait for its busy port", func() bool {
					r := in.status().Replicas[0]
					return r.State == "backoff" && r.Pid == 0 && strings.Contains(r.Error, "already in use")
				})
				return
			}
			testutil.WaitFor(t, 20*time.Second, "a new replica process ready", func() bool {
				r := in.status().Replicas[0]
				return r.State == "ready" && r.Pid != old.Pid
			})
			for _, pid := range orphans {
				if alive(pid) {
					t.Errorf("process %d of the crashed replica still runs: %s", pid, describe([]int{pid}))
				}
			}
			c := &http.Client{Timeout: 5 * time.Second}
			resp, err := c.Get(in.url("/"))
			if err != nil {
				t.Fatalf("request after the restart: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request after the restart: %s", resp.Status)
			}
		})
	}
}
