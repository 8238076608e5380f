package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestWritableStateDirIsRefused: `up` will not put its control socket in a
// directory where another user could rename it and listen in its place.
func TestWritableStateDirIsRefused(t *testing.T) {
	t.Parallel()
	home := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o777); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run(t, home, "up", "--host", "127.0.0.1", "-p", strconv.Itoa(testutil.FreePorts(t, 3)), "--", fakemodel)
	line := lastLine(stderr)
	if code == 0 || !strings.Contains(line, "state directory "+home+" is writable by other users") || !strings.Contains(line, "chmod go-w "+home) {
		t.Fatalf("up in a 0777 state directory: exit %d, stderr:\n%s", code, stderr)
	}
	// -d refuses it too, before it starts anything.
	_, stderr, code = run(t, home, "up", "-d", "--host", "127.0.0.1", "-p", strconv.Itoa(testutil.FreePorts(t, 3)), "--", fakemodel)
	if code == 0 || !strings.Contains(lastLine(stderr), "is writable by other users") {
		t.Fatalf("up -d in a 0777 state directory: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestImpostorInstanceIsRefused is the impostor attack with real processes:
// another user (nobody) runs an instance whose socket sits where ours
// would, in a shared sticky directory that passes the check. status and
// down refuse it, naming the socket and the uid, show none of its data,
// print no "stopped", and leave it running; up refuses the name. It needs
// root, to run mattingctl as nobody.
func TestImpostorInstanceIsRefused(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run mattingctl as another user (uid 65534); CI runs as root")
	}
	// A directory nobody can reach, with copies of the binaries nobody can
	// run (the test's own temporary directories are private).
	base, err := os.MkdirTemp("", "mattingctl-e2e-trust-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	home := filepath.Join(base, "shared")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{base, 0o755}, {home, 0o777 | os.ModeSticky}} {
		if err := os.MkdirAll(d.path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	bin := copyExecutable(t, mattingctl, base)
	model := copyExecutable(t, fakemodel, base)
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}

	port := testutil.FreePorts(t, 4)
	imp := &instance{t: t, home: home, port: port, done: make(chan struct{}), pids: map[int]bool{}}
	imp.cmd = exec.Command(bin, "up", "--host", "127.0.0.1", "-p", strconv.Itoa(port), "--admin", "none", "--", model)
	imp.cmd.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	imp.cmd.SysProcAttr = nobody
	imp.cmd.Stdout, imp.cmd.Stderr = &imp.stdout, &imp.stderr
	if err := imp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		imp.err = imp.cmd.Wait()
		close(imp.done)
	}()
	t.Cleanup(imp.cleanup)
	// nobody's own status shows its instance ready.
	testutil.WaitFor(t, 20*time.Second, "the impostor to be ready", func() bool {
		c := exec.Command(bin, "status", "--json")
		c.Env, c.SysProcAttr = imp.cmd.Env, nobody
		out, err := c.Output()
		return err == nil && strings.Contains(string(out), `"state": "ready"`)
	})

	sock := filepath.Join(home, "default.sock")
	want := "refusing control socket " + sock + ": it is served by uid 65534, not by you (uid 0) or root"
	out, stderr, code := run(t, home, "status", "--json")
	if code == 0 || out != "" || !strings.Contains(lastLine(stderr), want) {
		t.Errorf("status of the impostor: exit %d, stdout %q, stderr:\n%s", code, out, stderr)
	}
	out, stderr, code = run(t, home, "down")
	if code == 0 || strings.Contains(out, "stopped") || !strings.Contains(lastLine(stderr), want) {
		t.Errorf("down of the impostor: exit %d, stdout %q, stderr:\n%s", code, out, stderr)
	}
	// Bounded: were it not refused, this up would run in the foreground.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	up := exec.CommandContext(ctx, mattingctl, "up", "--host", "127.0.0.1", "-p", strconv.Itoa(testutil.FreePorts(t, 3)), "--", fakemodel)
	up.Env = append(os.Environ(), "MATTINGCTL_HOME="+home)
	upOut, err := up.CombinedOutput()
	checkRace(t, "mattingctl up", string(upOut))
	if err == nil || ctx.Err() != nil || !strings.Contains(lastLine(string(upOut)), want) {
		t.Errorf("up under the impostor's name: %v, output:\n%s", err, upOut)
	}
	select {
	case <-imp.done:
		t.Fatalf("the impostor's instance stopped (%v):\n%s", imp.err, imp.stderr.String())
	default:
	}
	if _, err := get(imp.url("/")); err != nil {
		t.Errorf("the impostor's instance stopped serving: %v", err)
	}
	// Its own user stops it.
	c := exec.Command(bin, "down")
	c.Env, c.SysProcAttr = imp.cmd.Env, nobody
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "instance default stopped") {
		t.Errorf("nobody's down: %v: %s", err, out)
	}
	if code := imp.wait(20 * time.Second); code != 0 {
		t.Errorf("impostor exited %d", code)
	}
}

// copyExecutable copies the binary at src into dir, mode 0755.
func copyExecutable(t *testing.T, src, dir string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
