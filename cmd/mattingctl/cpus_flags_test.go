package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// TestUpCPUsAndWarmupFlags: --cpus, --warmup and --warmup-count as flags
// and as config keys; --warmup-count 0 is refused naming the flag.
func TestUpCPUsAndWarmupFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mattingctl.yaml")
	run := func(args ...string) (*upOptions, error) {
		var got *upOptions
		root := newRootCmd(testFactory(), runFuncs{up: func(o *upOptions) error { got = o; return nil }})
		root.SetArgs(append([]string{"up"}, args...))
		return got, root.Execute()
	}
	o, err := run("--", "x")
	if err != nil || o.CPUs != "" || o.Warmup != "" || o.WarmupCount != 1 {
		t.Fatalf("defaults: %v %q %q %d", err, o.CPUs, o.Warmup, o.WarmupCount)
	}
	o, err = run("--cpus", "0-3,4-7", "--warmup", "w.json", "--warmup-count", "3", "--", "x")
	if err != nil || o.CPUs != "0-3,4-7" || o.Warmup != "w.json" || o.WarmupCount != 3 {
		t.Fatalf("flags: %v %q %q %d", err, o.CPUs, o.Warmup, o.WarmupCount)
	}
	if _, err := run("--warmup-count", "0", "--", "x"); err == nil || !strings.Contains(err.Error(), `"--warmup-count"`) {
		t.Errorf("--warmup-count 0: %v", err)
	}
	for _, tt := range []struct{ yaml, cpus string }{
		{"cpus: auto\nwarmup: w.json\nwarmup-count: 2\n", "auto"},
		{"cpus: [0-3, 4-7]\nwarmup: w.json\nwarmup-count: 2\n", "0-3,4-7"},
		{"cpus: 0+2,1+3\nwarmup: w.json\nwarmup-count: 2\n", "0+2,1+3"},
	} {
		if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := run("-f", path, "--", "x")
		if err != nil || o.CPUs != tt.cpus || o.Warmup != "w.json" || o.WarmupCount != 2 {
			t.Errorf("file %q: %v, cpus %q warmup %q count %d", tt.yaml, err, o.CPUs, o.Warmup, o.WarmupCount)
		}
	}
}

// TestWriteStatusCPUs: the CPUS column appears when replicas are pinned.
func TestWriteStatusCPUs(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := control.Status{
		Name: "default", Port: 9110, Pid: 42, Desired: 2, Command: []string{"x"}, Policy: "least_conn", StartedAt: now, QueueMax: 1024,
		Replicas: []control.ReplicaStatus{
			{ID: 1, Name: "replica-1", Port: 9111, State: "starting", CPUs: "0-3"},
			{ID: 2, Name: "replica-2", Port: 9112, State: "starting", CPUs: "4-7"},
		},
	}
	var b strings.Builder
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if !strings.HasSuffix(lines[4], "CPUS") || !strings.HasSuffix(lines[5], "0-3") || !strings.HasSuffix(lines[6], "4-7") {
		t.Errorf("status table:\n%s", b.String())
	}
	st.Replicas[0].CPUs, st.Replicas[1].CPUs = "", ""
	b.Reset()
	_ = writeStatus(&b, st, now)
	if strings.Contains(b.String(), "CPUS") {
		t.Errorf("a CPUS column without pinned replicas:\n%s", b.String())
	}
}
