package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateDir(t *testing.T) {
	home, _ := os.UserHomeDir()
	tests := []struct {
		name, mhome, xdg, want string
	}{
		{"MATTINGCTL_HOME wins", "/m", "/run/user/1", "/m"},
		{"XDG_RUNTIME_DIR next", "", "/run/user/1", "/run/user/1/mattingctl"},
		{"home last", "", "", filepath.Join(home, ".mattingctl")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("MATTINGCTL_HOME", tt.mhome)
			t.Setenv("XDG_RUNTIME_DIR", tt.xdg)
			got, err := StateDir()
			if err != nil || got != tt.want {
				t.Fatalf("StateDir() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestControlSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	c, err := Listen(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(c.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode = %v, want 0700", di.Mode().Perm())
	}
	if _, err := Listen(dir, "default"); err == nil || !strings.Contains(err.Error(), `an instance named "default" is already running`) {
		t.Errorf("second listen: %v", err)
	}
	// A socket whose listener is gone (a killed instance) is replaced.
	c.ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	c.ln.Close()
	if _, err := os.Stat(c.Path()); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	c2, err := Listen(dir, "default")
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	c2.Close()
	if _, err := os.Stat(c2.Path()); !os.IsNotExist(err) {
		t.Errorf("socket not removed on close")
	}
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if _, err := Listen(long, "default"); err == nil || !strings.Contains(err.Error(), "too long for a Unix socket") {
		t.Errorf("long path: %v", err)
	}
}

// TestInstances: the instances in a state directory are its sockets with
// valid names, a stale one included; the errors of reaching them say
// which kind they are.
func TestInstances(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if names, err := Instances(dir); err != nil || names != nil {
		t.Fatalf("Instances of a missing directory = %v, %v", names, err)
	}
	live, err := Listen(dir, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	stale, err := Listen(dir, "old")
	if err != nil {
		t.Fatal(err)
	}
	stale.ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	stale.ln.Close()
	for _, f := range []string{"web.log", "notes.sock", "-bad.sock"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	names, err := Instances(dir)
	if err != nil || strings.Join(names, ",") != "old,web" {
		t.Errorf("Instances = %v, %v; want old,web", names, err)
	}
	c, err := Connect(dir, "old")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(context.Background()); !errors.Is(err, ErrNotRunning) || errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "stale control socket") {
		t.Errorf("status of a stale socket: %v", err)
	}
	if _, err := Connect(dir, "gone"); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "no control socket") {
		t.Errorf("connecting to no socket: %v", err)
	}
	if !errors.Is(&UntrustedPeerError{Path: "x", UID: 1}, ErrPermission) {
		t.Error("an untrusted peer is not a permission error")
	}
}
