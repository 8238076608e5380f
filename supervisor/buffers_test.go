package supervisor

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mattingctl/mattingctl/balancer"
)

func TestBufferOptions(t *testing.T) {
	base := upDefaults(1)
	o, err := base.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if l := balancer.DefaultLimits(); o.MaxBuffer != l.MaxBuffer || o.MaxDiskBuffer != l.MaxDiskBuffer || o.BufferDir != DefaultBufferDir("/s", "default") {
		t.Errorf("defaults: max buffer %d, max disk buffer %d, dir %s", o.MaxBuffer, o.MaxDiskBuffer, o.BufferDir)
	}
	rel := base
	rel.BufferDir = "bodies"
	if o, err := rel.resolve(); err != nil || !filepath.IsAbs(o.BufferDir) {
		t.Errorf("--buffer-dir bodies became %q (%v), want an absolute path", o.BufferDir, err)
	}
	if m := o.MaxBuffer; m <= 0 || m > 1<<30 {
		t.Errorf("default max buffer %d, want at most 1 GiB", m)
	}
	for _, tt := range []struct {
		name    string
		mem     int64
		disk    int64
		wantErr string
	}{
		{"memory off", 0, 1 << 30, ""},
		{"disk off", 1 << 30, 0, ""},
		{"both off", 0, 0, "--max-buffer 0 and --max-disk-buffer 0 leave no room"},
		{"negative memory", -5, 0, "--max-buffer must not be negative (0 means no body in memory), not -5"},
		{"negative disk", 0, -5, "--max-disk-buffer must not be negative (0 means no body on disk), not -5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.MaxBuffer, o.MaxDiskBuffer = tt.mem, tt.disk
			got, err := o.resolve()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.MaxBuffer != tt.mem || got.MaxDiskBuffer != tt.disk {
					t.Errorf("%d, %d became %d, %d: zero is none, not a default", tt.mem, tt.disk, got.MaxBuffer, got.MaxDiskBuffer)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestDefaultBufferDirIsPerInstance: two instances, by name or by state
// directory, never share a buffer directory.
func TestDefaultBufferDirIsPerInstance(t *testing.T) {
	dirs := map[string]bool{}
	for _, d := range []string{
		DefaultBufferDir("/a", "default"), DefaultBufferDir("/a", "other"), DefaultBufferDir("/b", "default"),
	} {
		if dirs[d] {
			t.Errorf("%s is shared", d)
		}
		dirs[d] = true
		if filepath.Dir(d) != filepath.Clean(os.TempDir()) {
			t.Errorf("%s is not under the temp directory", d)
		}
	}
}

// TestPrepareBufferDir: leftovers of a killed instance go, other files
// stay; a default directory others can reach is refused.
func TestPrepareBufferDir(t *testing.T) {
	t.Run("leftovers", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "buf")
		o := Options{StateDir: t.TempDir(), Name: "n"}
		o.BufferDir = dir
		if err := o.prepareBufferDir(); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("created %v (%v), want mode 0700", fi.Mode(), err)
		}
		for _, name := range []string{"mattingctl-body-123", "notes.txt"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.prepareBufferDir(); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 || entries[0].Name() != "notes.txt" {
			t.Errorf("left %v, want only notes.txt", entries)
		}
	})
	t.Run("default reachable by others", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("Unix permissions")
		}
		o := Options{StateDir: t.TempDir(), Name: "open"}
		o.BufferDir = DefaultBufferDir(o.StateDir, o.Name)
		if err := os.Mkdir(o.BufferDir, 0o700); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(o.BufferDir)
		if err := os.Chmod(o.BufferDir, 0o777); err != nil {
			t.Fatal(err)
		}
		err := o.prepareBufferDir()
		if err == nil || !strings.Contains(err.Error(), "others can reach it") || !strings.Contains(err.Error(), "--buffer-dir") {
			t.Errorf("error %v, want a refusal naming --buffer-dir", err)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		o := Options{StateDir: t.TempDir(), Name: "n"}
		o.BufferDir = f
		if err := o.prepareBufferDir(); err == nil || !strings.Contains(err.Error(), "--buffer-dir") {
			t.Errorf("error %v, want one naming --buffer-dir", err)
		}
	})
}
