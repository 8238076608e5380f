//go:build linux

package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// These tests put another user at the other end of the control socket:
// this test binary run as nobody (the helper-process pattern). Changing
// uid needs root; CI runs as root.

const nobody = 65534

const helperEnv = "MATTINGCTL_CONTROL_TEST_HELPER"

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a helper process as another user (uid 65534); CI runs as root")
	}
}

// sharedDir returns a directory that nobody can reach (0755, as are its
// parents), and a copy there of this test binary that nobody can run: go
// test's own build directory is private.
func sharedDir(t *testing.T) (dir, bin string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mattingctl-trust-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	chmod(t, dir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin = filepath.Join(dir, "control.test")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// The helpers exit once this test binary has, killed or not.
func init() { testutil.MarkTestBinary() }

// asNobody returns a command running this test binary's helper, as uid
// 65534, in mode with args.
func asNobody(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, append([]string{"-test.run=^TestHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return cmd
}

// TestHelperProcess is not a test: it is the other user, in a child
// process. "status DIR NAME" prints what a status call got; "impostor DIR
// NAME" serves a fake instance's API at NAME's socket until killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	testutil.ExitWithTestBinary()
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	if len(args) != 4 {
		fmt.Println("usage: -- status|impostor DIR NAME")
		os.Exit(2)
	}
	mode, dir, name := args[1], args[2], args[3]
	switch mode {
	case "status":
		c, err := Connect(dir, name)
		if err == nil {
			var st Status
			st, err = c.Status(context.Background())
			if err == nil {
				fmt.Printf("ok: status of %q\n", st.Name)
				os.Exit(0)
			}
		}
		fmt.Printf("error: %v\n", err)
	case "impostor":
		srv, err := Listen(dir, name)
		if err != nil {
			fmt.Printf("error: %v\n", err)
			os.Exit(1)
		}
		srv.Start(newFakeInstance("impostor"), hclog.NewNullLogger())
		select {}
	}
	os.Exit(0)
}

// runStatusAsNobody runs `status` of name in dir as nobody and returns
// what it printed.
func runStatusAsNobody(t *testing.T, bin, dir, name string) string {
	t.Helper()
	out, err := asNobody(bin, "status", dir, name).CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestOtherUserGetsPermissionDenied: another user's `status` is told
// permission denied, naming the socket, not "stale control socket".
func TestOtherUserGetsPermissionDenied(t *testing.T) {
	requireRoot(t)
	base, bin := sharedDir(t)
	for _, mode := range []os.FileMode{0o755, 0o700} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(base, "state"+mode.String())
			if err := os.Mkdir(dir, mode); err != nil {
				t.Fatal(err)
			}
			chmod(t, dir, mode)
			srv, err := Listen(dir, "default")
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			srv.Start(newFakeInstance("real"), hclog.NewNullLogger())
			out := runStatusAsNobody(t, bin, dir, "default")
			if !strings.HasPrefix(out, "error: permission denied") || !strings.Contains(out, srv.Path()) || strings.Contains(out, "stale") {
				t.Errorf("nobody's status of root's instance in a %v directory: %s", mode, out)
			}
		})
	}
}

// TestServerRefusesOtherUser: even when the socket's mode would let
// another user connect, the server closes the connection unread.
func TestServerRefusesOtherUser(t *testing.T) {
	requireRoot(t)
	base, bin := sharedDir(t)
	dir := filepath.Join(base, "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var log testutil.SyncBuffer
	srv.Start(newFakeInstance("real"), hclog.New(&hclog.LoggerOptions{Output: &log}))
	chmod(t, srv.Path(), 0o666)
	out := runStatusAsNobody(t, bin, dir, "default")
	if !strings.HasPrefix(out, "error: permission denied: control socket "+srv.Path()+" belongs to uid 0") || strings.Contains(out, "real") {
		t.Errorf("nobody's status through a 0666 socket: %s", out)
	}
	testutil.WaitFor(t, 5*time.Second, "the refusal to be logged", func() bool {
		return strings.Contains(log.String(), "refused a control connection from another user: uid=65534")
	})
	// This user still gets through.
	c, err := Connect(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(context.Background()); err != nil || st.Name != "real" {
		t.Errorf("own status: %+v, %v", st, err)
	}
}

// TestImpostorIsRefused is the impostor attack: another user listens at the
// instance's socket path, in a directory that passes the check (sticky and
// world-writable, as /tmp: anyone may create a socket of a name not yet
// taken). status and down refuse it, naming the socket and its uid,
// showing none of its data and printing no "stopped"; up refuses to start
// under the name.
func TestImpostorIsRefused(t *testing.T) {
	requireRoot(t)
	base, bin := sharedDir(t)
	dir := filepath.Join(base, "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chmod(t, dir, 0o777|os.ModeSticky)
	impostor := asNobody(bin, "impostor", dir, "default")
	var out testutil.SyncBuffer
	impostor.Stdout, impostor.Stderr = &out, &out
	if err := impostor.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		impostor.Process.Kill()
		impostor.Wait()
	})
	path := SocketPath(dir, "default")
	testutil.WaitFor(t, 10*time.Second, "the impostor to listen", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	c, err := Connect(dir, "default")
	if err != nil {
		t.Fatalf("Connect: %v (impostor: %s)", err, out.String())
	}
	want := fmt.Sprintf("refusing control socket %s: it is served by uid 65534, not by you (uid 0) or root", path)
	st, err := c.Status(context.Background())
	var untrusted *UntrustedPeerError
	if !errors.As(err, &untrusted) || !strings.Contains(err.Error(), want) || st.Name != "" {
		t.Errorf("status of the impostor: %+v, %v; want %q", st, err, want)
	}
	if err := c.Down(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("down of the impostor: %v", err)
	}
	if _, err := c.Scale(context.Background(), 0); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("scale of the impostor: %v", err)
	}
	if _, err := Listen(dir, "default"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("up under the impostor's name: %v", err)
	}
}

// TestCheckStateDirOtherOwner: a directory of another user is refused even
// with mode 0700, as ssh's StrictModes refuses it.
func TestCheckStateDirOtherOwner(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	err := CheckStateDir(dir)
	var unsafe *UnsafeDirError
	if !errors.As(err, &unsafe) || unsafe.Writable || !strings.Contains(err.Error(), "belongs to uid 65534, not to you (uid 0) or root") {
		t.Fatalf("CheckStateDir of nobody's directory: %v", err)
	}
	if _, err := Listen(dir, "default"); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Errorf("Listen in nobody's directory: %v", err)
	}
}
