//go:build unix

package accesslog

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sharedTmp makes a directory anyone can write, as /tmp (sticky too).
func sharedTmp(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startFile starts a Log on path, and closes it when the test ends.
func startFile(t *testing.T, path string) error {
	t.Helper()
	l := New(Options{Path: path, Format: Combined})
	err := l.Start()
	if err == nil {
		t.Cleanup(func() { l.Close(time.Second) })
	}
	return err
}

// The attack: in a directory others can write, another user points the
// access log's path at a file of root's, which root would append to.
func TestOpenRefusesASymlinkInASharedDirectory(t *testing.T) {
	dir := sharedTmp(t)
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "access.log")
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	err := startFile(t, path)
	if err == nil || !strings.Contains(err.Error(), "is a symbolic link in "+dir+", a directory others can write") {
		t.Fatalf("Start = %v, want a refusal naming the symbolic link", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root's\n" {
		t.Fatalf("the link's target was written: %q", b)
	}
}

func TestOpenRefusesAHardLinkInASharedDirectory(t *testing.T) {
	dir := sharedTmp(t)
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "access.log")
	if err := os.Link(victim, path); err != nil {
		t.Fatal(err)
	}
	if err := startFile(t, path); err == nil || !strings.Contains(err.Error(), "has 2 hard links") {
		t.Fatalf("Start = %v, want a refusal naming the hard links", err)
	}
}

// A FIFO would block the open (and `up`) until a reader came.
func TestOpenRefusesAFIFOInASharedDirectory(t *testing.T) {
	dir := sharedTmp(t)
	path := filepath.Join(dir, "access.log")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- startFile(t, path) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("Start = %v, want a refusal of the FIFO", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start blocked on a FIFO")
	}
}

func TestOpenRefusesAnotherUsersFileInASharedDirectory(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
	dir := sharedTmp(t)
	path := filepath.Join(dir, "access.log")
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := startFile(t, path); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("Start = %v, want a refusal naming the owner", err)
	}
}

// What still works: a new file in a shared directory (created as ours), an
// existing one of ours there, and a symbolic link in a directory only we
// can write (nobody else could have put it there).
func TestOpenAllowsWhatIsSafe(t *testing.T) {
	dir := sharedTmp(t)
	fresh := filepath.Join(dir, "access.log")
	if err := startFile(t, fresh); err != nil {
		t.Fatalf("a new file in a shared directory: %v", err)
	}
	if err := startFile(t, fresh); err != nil {
		t.Fatalf("our own file in a shared directory: %v", err)
	}
	private := t.TempDir()
	target := filepath.Join(private, "real.log")
	link := filepath.Join(private, "access.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := startFile(t, link); err != nil {
		t.Fatalf("a symbolic link in a private directory: %v", err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatalf("the link was not followed: %v", err)
	}
}
