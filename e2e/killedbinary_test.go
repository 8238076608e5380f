package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// killedChildEnv, in the environment of a child test binary, names the
// file TestKilledTestBinaryLeavesNothing's child writes once it has
// started everything.
const killedChildEnv = "MATTINGCTL_E2E_KILLED_CHILD"

// TestKilledTestBinaryLeavesNothing: a test binary killed with kill -9
// mid-run, whose tests had started a foreground instance, an `up -d` one
// (in a session of its own), a tmux server running `mattingctl top` and a
// browser, leaves no process of them running 5 s later. A child test
// binary starts them all and waits; this test kills it.
func TestKilledTestBinaryLeavesNothing(t *testing.T) {
	if ready := os.Getenv(killedChildEnv); ready != "" {
		startEverythingAndWait(t, ready)
		return
	}
	t.Parallel()
	id, err := newRunID()
	if err != nil {
		t.Fatal(err)
	}
	// Every process of the child's run carries the tag, the child too.
	tag := "killed-binary-" + id
	ready := filepath.Join(t.TempDir(), "ready")
	child := exec.Command(os.Args[0], "-test.run=^TestKilledTestBinaryLeavesNothing$", "-test.v")
	child.Env = append(os.Environ(), killedChildEnv+"="+ready, binDirEnv+"="+filepath.Dir(mattingctl), tagEnv+"="+tag)
	var out testutil.SyncBuffer
	child.Stdout, child.Stderr = &out, &out
	child.SysProcAttr = diesWithTest()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = child.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = child.Process.Kill()
		<-exited
		for _, pid := range tagged(tag) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	testutil.WaitFor(t, 90*time.Second, "the child test binary to start everything", func() bool {
		select {
		case <-exited:
			t.Fatalf("the child test binary exited (%v) before it was killed:\n%s", waitErr, out.String())
		default:
		}
		_, err := os.Stat(ready)
		return err == nil
	})

	// The tag reaches every process that inherits its environment; the
	// child's descendants are counted too, for a program that clears
	// its children's environment (Chromium's zygote might).
	pids := tagged(tag)
	for _, pid := range descendants(child.Process.Pid) {
		if !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	running := describe(pids)
	want := []string{"mattingctl up --port", "mattingctl up -d", "fakemodel", "tmux", "mattingctl top"}
	if _, err := exec.LookPath("chromium"); err == nil {
		want = append(want, "chromium")
	}
	for _, w := range want {
		if !strings.Contains(running, w) {
			t.Fatalf("no %q among the child's processes, so the test proves nothing for it: %s", w, running)
		}
	}
	t.Logf("the child runs: %s", running)

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	for {
		var left []int
		for _, pid := range append(pids, tagged(tag)...) {
			if alive(pid) && !slices.Contains(left, pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			break
		}
		// The reaper scans every process's environment until three looks
		// in a row find none of the run's; with a browser's dozen
		// processes on a busy CI machine it was seen still at it after 5
		// s, and once (itself the one left) after 15. It sweeps for at
		// most 20 s (sweep in reaper_test.go): this waits that and 5 s.
		if time.Since(killed) > 25*time.Second {
			t.Fatalf("25 s after the test binary was killed, its run's processes still run: %s", describe(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("all gone %s after the kill", time.Since(killed).Round(time.Millisecond))
}

// descendants lists the processes under pid, at any depth.
func descendants(pid int) []int {
	var all []int
	for next := []int{pid}; len(next) > 0; {
		kids := childrenOf(next[0])
		next = append(next[1:], kids...)
		all = append(all, kids...)
	}
	return all
}

// startEverythingAndWait is the child's part: it starts one of each kind
// of process the e2e tests start, writes the file ready and waits to be
// killed.
func startEverythingAndWait(t *testing.T, ready string) {
	in := start(t, 3, "--", fakemodel)
	in.waitReady(3)

	home := t.TempDir()
	port := testutil.FreePorts(t, 4)
	if out, errOut, code := run(t, home, "up", "-d", "-r", "2", "-p", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "none", "--", fakemodel); code != 0 {
		t.Fatalf("up -d: exit %d\n%s%s", code, out, errOut)
	}

	p := startTop(t, in.home)
	testutil.WaitFor(t, topFirstScreen, "top's first screen", func() bool {
		return strings.Contains(strings.Join(p.screen(), "\n"), "replica-3")
	})

	if chrome, err := exec.LookPath("chromium"); err == nil {
		ctx := browser(t, chrome)
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
			t.Fatal(err)
		}
	}

	if err := os.WriteFile(ready, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Hour) // until killed
}
