package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Command: []string{"x"}, Replicas: 4, StateDir: "/s"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "default" || o.Port != 9110 || o.BasePort != 9111 || o.ReadyTimeout != 5*time.Minute ||
		o.StopTimeout != 30*time.Second || o.Policy != "least_conn" {
		t.Errorf("defaults: %+v", o)
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no replicas", Options{}, "--replicas must be at least 1, not 0"},
		{"negative replicas", Options{Replicas: -2}, "--replicas must be at least 1, not -2"},
		{"port range", Options{Replicas: 1, Port: 70000}, "--port 70000 is not a TCP port"},
		{"replica ports overflow", Options{Replicas: 3, Port: 100, BasePort: 65534}, "replica ports 65534-65536 are outside 1-65535"},
		{"proxy among replicas", Options{Replicas: 3, Port: 9112, BasePort: 9111}, "--port 9112 falls among the replica ports 9111-9113"},
		{"health not a path", Options{Replicas: 1, Health: "health"}, `--health "health" must be a path`},
		{"policy", Options{Replicas: 1, Policy: "random"}, `unknown policy "random"`},
		{"env", Options{Replicas: 1, Env: []string{"NOEQUALS"}}, `--env "NOEQUALS" is not KEY=VALUE`},
		{"name", Options{Replicas: 1, Name: "a/b"}, `--name "a/b"`},
		{"weights without weighted", Options{Replicas: 2, Weights: []int{2, 1}}, "--weights applies only to --policy weighted"},
		{"zero weight", Options{Replicas: 2, Policy: "weighted", Weights: []int{2, 0}}, "weight 0 of replica-2 must be at least 1"},
		{"negative cap", Options{Replicas: 1, MaxInflight: -1}, "--max-inflight must not be negative"},
		{"negative queue", Options{Replicas: 1, Queue: -1}, "--queue must not be negative"},
		{"negative retries", Options{Replicas: 1, Retries: -1}, "--retries must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.o.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"50m", 50 << 20, true},
		{"50MiB", 50 << 20, true},
		{"50MB", 50 << 20, true},
		{"512k", 512 << 10, true},
		{"1g", 1 << 30, true},
		{" 2 KiB ", 2 << 10, true},
		{"0", 0, true},
		{"", 0, false},
		{"lots", 0, false},
		{"-1m", 0, false},
		{"1.5m", 0, false},
		{"99999999999g", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseCount(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  string
	}{
		{"6", 6, ""},
		{"0", 0, ""},
		{"-1", 0, "must not be negative"},
		{"six", 0, `"six" is not a whole number`},
		{"2.5", 0, "not a whole number"},
	}
	for _, tt := range tests {
		got, err := ParseCount(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseCount(%q) = %d, %v; want %d, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

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

func TestFormat(t *testing.T) {
	bytes := []struct {
		n    uint64
		want string
	}{{0, "0B"}, {1023, "1023B"}, {1536, "1.5KiB"}, {210 << 20, "210MiB"}, {3 << 30, "3.0GiB"}}
	for _, tt := range bytes {
		if got := FormatBytes(tt.n); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	durations := []struct {
		d    time.Duration
		want string
	}{{45 * time.Second, "45s"}, {12*time.Minute + 3*time.Second, "12m3s"}, {5*time.Hour + 2*time.Minute, "5h2m"}, {76 * time.Hour, "3d4h"}}
	for _, tt := range durations {
		if got := FormatDuration(tt.d); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	started := now.Add(-90 * time.Second)
	st := Status{
		Name: "default", Port: 9110, Pid: 42, Desired: 2, Command: []string{"python3", "app.py"},
		Policy: "least_conn", StartedAt: now.Add(-time.Hour), Queued: 3, QueueMax: 1024, Rejected: 7, Retried: 2, Failed: 1,
		Replicas: []ReplicaStatus{
			{ID: 1, Name: "replica-1", Port: 9111, Pid: 100, State: "ready", Inflight: 3, MaxInflight: 8, Requests: 1200, CPUPercent: 87.5, RSSBytes: 300 << 20, StartedAt: &started},
			{ID: 2, Name: "replica-2", Port: 9112, State: "failed", Restarts: 5, LastRestart: "crash: exit code 1", Error: "replica-2 crashed 6 times in a row"},
		},
	}
	var b strings.Builder
	if err := WriteStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := `instance default: pid 42, proxy port 9110, least_conn, 1/2 replicas ready, up 1h0m
command: python3 app.py
queue: 3 waiting (max 1024); rejected 7, retried 2, failed 1

REPLICA    PORT  PID  STATE   UPTIME  RESTARTS  LAST RESTART        INFLIGHT  REQUESTS  ERRORS  CPU    RSS
replica-1  9111  100  ready   1m30s   0         -                   3/8       1200      0       87.5%  300MiB
replica-2  9112  -    failed  -       5         crash: exit code 1  0         0         0       -      -
replica-2 failed: replica-2 crashed 6 times in a row
`
	if b.String() != want {
		t.Errorf("status table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestControlSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	c, err := listenControl(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(c.path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode = %v, want 0700", di.Mode().Perm())
	}
	if _, err := listenControl(dir, "default"); err == nil || !strings.Contains(err.Error(), `an instance named "default" is already running`) {
		t.Errorf("second listen: %v", err)
	}
	// A socket whose listener is gone (a killed instance) is replaced.
	c.ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	c.ln.Close()
	if _, err := os.Stat(c.path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	c2, err := listenControl(dir, "default")
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	c2.close()
	if _, err := os.Stat(c2.path); !os.IsNotExist(err) {
		t.Errorf("socket not removed on close")
	}
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if _, err := listenControl(long, "default"); err == nil || !strings.Contains(err.Error(), "too long for a Unix socket") {
		t.Errorf("long path: %v", err)
	}
}

func TestParseGPUs(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  bool
	}{
		{"0,1,2,3", "[0 1 2 3]", false},
		{" 0, 1 ", "[0 1]", false},
		{"GPU-8a1b,GPU-9c2d", "[GPU-8a1b GPU-9c2d]", false},
		{"0,,1", "", true},
		{"", "", true},
		{"0 1", "", true},
	}
	for _, tt := range tests {
		got, err := ParseGPUs(tt.in)
		if (err != nil) != tt.err || err == nil && fmt.Sprint(got) != tt.want {
			t.Errorf("ParseGPUs(%q) = %v, %v; want %s (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
	smi := []byte("GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-8a1b)\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9c2d)\n")
	if got := fmt.Sprint(gpusFromSMI(smi)); got != "[0 1]" {
		t.Errorf("gpusFromSMI = %s, want [0 1]", got)
	}
}
