package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestLsListsTheInstances: ls shows every instance in the state
// directory, with its pid, proxy address, replicas ready and uptime, and a
// socket a killed instance left as stale; once they are down, only the
// stale one is left.
func TestLsListsTheInstances(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	web := startIn(t, home, 2, "--", fakemodel)
	gpu := startIn(t, home, 1, "--name", "gpu", "--", fakemodel)
	webSt := web.waitReady(2)
	var gpuSt control.Status
	testutil.WaitFor(t, 30*time.Second, "gpu's replica to be ready", func() bool {
		c, err := control.Connect(home, "gpu")
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gpuSt, err = c.Status(ctx)
		return err == nil && gpuSt.Ready() == 1
	})
	// What a killed instance leaves: a socket nothing serves.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(home, "dead.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	out, errOut, code := run(t, home, "ls")
	rows := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^NAME +PID +PROXY +READY +UPTIME$`),
		regexp.MustCompile(`(?m)^dead +- +- +- +stale$`),
		regexp.MustCompile(`(?m)^default +` + strconv.Itoa(webSt.Pid) + ` +127\.0\.0\.1:` + strconv.Itoa(web.port) + ` +2/2 +\d+s$`),
		regexp.MustCompile(`(?m)^gpu +` + strconv.Itoa(gpuSt.Pid) + ` +127\.0\.0\.1:` + strconv.Itoa(gpu.port) + ` +1/1 +\d+s$`),
		regexp.MustCompile(`(?m)^dead: stale: its control socket is left, but its mattingctl is not running`),
	}
	for _, re := range rows {
		if !re.MatchString(out) {
			t.Errorf("ls: no line matching %s in:\n%s%s", re, out, errOut)
		}
	}
	if code != 0 {
		t.Errorf("ls: exit %d", code)
	}

	out, _, code = run(t, home, "ls", "--json")
	var list []struct {
		Name, State, Proxy, URL string
		Pid, Ready, Replicas    int
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list) != 3 {
		t.Fatalf("ls --json: exit %d, %v\n%s", code, err, out)
	}
	if e := list[1]; e.Name != "default" || e.State != "running" || e.Pid != webSt.Pid || e.Ready != 2 || e.Replicas != 2 ||
		e.URL != "http://127.0.0.1:"+strconv.Itoa(web.port)+"/" {
		t.Errorf("ls --json, default: %+v", e)
	}
	if list[0].Name != "dead" || list[0].State != "stale" || list[2].Name != "gpu" || list[2].State != "running" {
		t.Errorf("ls --json: %+v", list)
	}

	for _, name := range []string{"default", "gpu"} {
		if out, errOut, code := run(t, home, "down", "--name", name); code != 0 {
			t.Fatalf("down --name %s: exit %d %s%s", name, code, out, errOut)
		}
	}
	web.wait(30 * time.Second)
	gpu.wait(30 * time.Second)
	out, _, _ = run(t, home, "ls", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Name != "dead" {
		t.Errorf("ls --json after down: %v\n%s", err, out)
	}
}

// TestLogsFollowEndsAtDown: logs -f of a background instance, and logs -f
// --replica 2, print to the instance's last line and exit 0 when it is
// stopped; --replica 2 has mattingctl's lines about replica 2.
func TestLogsFollowEndsAtDown(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	port := testutil.FreePorts(t, 4)
	cleanupDetached(t, home)
	if out, errOut, code := run(t, home, "up", "-d", "-r", "2", "-p", strconv.Itoa(port), "--host", "127.0.0.1", "--admin", "none", "--", fakemodel); code != 0 {
		t.Fatalf("up -d: exit %d\n%s%s", code, out, errOut)
	}
	type follower struct {
		cmd         *exec.Cmd
		out, errOut testutil.SyncBuffer
		done        chan error
	}
	follow := func(args ...string) *follower {
		f := &follower{cmd: exec.Command(mattingctl, append([]string{"logs", "-f"}, args...)...), done: make(chan error, 1)}
		f.cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home, quickExit())
		f.cmd.Stdout, f.cmd.Stderr = &f.out, &f.errOut
		f.cmd.SysProcAttr = diesWithTest()
		if err := f.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { f.done <- f.cmd.Wait() }()
		t.Cleanup(func() {
			_ = f.cmd.Process.Kill()
			<-f.done
			f.done <- nil // for a wait after this one
		})
		return f
	}
	all, two := follow(), follow("--replica", "2")
	testutil.WaitFor(t, 30*time.Second, "logs -f to print the ready line", func() bool {
		return strings.Contains(all.out.String(), "mattingctl: ready:") && strings.Contains(two.out.String(), "replica ready: replica=replica-2 ")
	})
	if out, errOut, code := run(t, home, "down"); code != 0 {
		t.Fatalf("down: exit %d %s%s", code, out, errOut)
	}
	for _, f := range []*follower{all, two} {
		select {
		case err := <-f.done:
			f.done <- err
			checkRace(t, "mattingctl logs -f", f.out.String()+f.errOut.String())
			if err != nil || f.errOut.String() != "instance default stopped\n" {
				t.Errorf("%s after down: %v, stderr %q", commandLine(mattingctl, f.cmd.Args[1:]), err, f.errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still running 30 s after down:\n%s", commandLine(mattingctl, f.cmd.Args[1:]), f.out.String())
		}
	}
	if !strings.HasSuffix(all.out.String(), "[INFO]  mattingctl: stopped\n") {
		t.Errorf("logs -f did not print to the instance's last line:\n%s", all.out.String())
	}
	got := two.out.String()
	if !strings.Contains(got, "replica-2 | ") || !regexp.MustCompile(`replica stopped: replica=replica-2 .*reason=down\n$`).MatchString(got) ||
		strings.Contains(got, "replica-1") {
		t.Errorf("logs -f --replica 2:\n%s", got)
	}
}
