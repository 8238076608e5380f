package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

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
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
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
		{"1", 1, ""},
		{"0", 0, "replica count must be at least 1, not 0"},
		{"-1", 0, "replica count must be at least 1, not -1"},
		{"six", 0, `"six" is not a whole number`},
		{"2.5", 0, "not a whole number"},
	}
	for _, tt := range tests {
		got, err := parseCount(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("parseCount(%q) = %d, %v; want %d, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestFormat(t *testing.T) {
	bytes := []struct {
		n    uint64
		want string
	}{{0, "0B"}, {1023, "1023B"}, {1536, "1.5KiB"}, {210 << 20, "210MiB"}, {3 << 30, "3.0GiB"}}
	for _, tt := range bytes {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	durations := []struct {
		d    time.Duration
		want string
	}{{45 * time.Second, "45s"}, {12*time.Minute + 3*time.Second, "12m3s"}, {5*time.Hour + 2*time.Minute, "5h2m"}, {76 * time.Hour, "3d4h"}}
	for _, tt := range durations {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	started := now.Add(-90 * time.Second)
	st := control.Status{
		Name: "default", Port: 9110, Pid: 42, Desired: 2, Command: []string{"python3", "app.py"},
		Policy: "least_conn", StartedAt: now.Add(-time.Hour), Queued: 3, QueueMax: 1024, Rejected: 7, Retried: 2, Failed: 1,
		Latency: control.LatencyStatus{Responses: 2460, P50Ms: 12.27, P95Ms: 404.6, P99Ms: 1536},
		Replicas: []control.ReplicaStatus{
			{ID: 1, Name: "replica-1", Port: 9111, Pid: 100, State: "ready", Inflight: 3, MaxInflight: 8, Limit: 8, Requests: 1200, CPUPercent: 87.5, RSSBytes: 300 << 20, StartedAt: &started,
				RPS: 41.25, P50Ms: 12.27, P99Ms: 1536},
			{ID: 2, Name: "replica-2", Port: 9112, State: "failed", Restarts: 5, LastRestart: "crash: exit code 1", Error: "replica-2 crashed 6 times in a row"},
		},
	}
	var b strings.Builder
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := `instance default: pid 42, proxy port 9110, least_conn, 1/2 replicas ready, up 1h0m
command: python3 app.py
queue: 3 waiting (max 1024); rejected 7, retried 2, failed 1
latency, last minute, all replicas: p50 12.3ms, p95 405ms, p99 1.54s (2460 responses)

REPLICA    PORT  PID  STATE   UPTIME  RESTARTS  LAST RESTART        INFLIGHT  REQUESTS  ERRORS  RPS   P50     P99    CPU    RSS
replica-1  9111  100  ready   1m30s   0         -                   3/8       1200      0       41.2  12.3ms  1.54s  87.5%  300MiB
replica-2  9112  -    failed  -       5         crash: exit code 1  0         0         0       0.0   -       -      -      -
replica-2 failed: replica-2 crashed 6 times in a row
`
	if b.String() != want {
		t.Errorf("status table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestWriteStatusBatches: the batches line appears once a batch was sent,
// and not before (TestWriteStatus).
func TestWriteStatusBatches(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := control.Status{Name: "default", Port: 9110, Pid: 42, Desired: 1, Command: []string{"python3", "app.py"},
		Policy: "least_conn", StartedAt: now.Add(-time.Hour), QueueMax: 1024, Batches: 264, Batched: 2112, BatchesSplit: 1}
	var b strings.Builder
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := "batches: 264 sent, 8.0 requests each on average; 1 answered not as a batch (their requests went alone)\n"
	if !strings.Contains(b.String(), "failed 0\n"+want) {
		t.Errorf("status:\n%s\nwant after the queue line:\n%s", b.String(), want)
	}
}

// TestWriteStatusUpgraded: the UPGRADED column appears once a replica has
// an upgraded connection (WebSocket) open, and not before (TestWriteStatus).
func TestWriteStatusUpgraded(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	started := now.Add(-90 * time.Second)
	st := control.Status{
		Name: "default", Port: 9110, Pid: 42, Desired: 2, Command: []string{"python3", "app.py"},
		Policy: "least_conn", StartedAt: now.Add(-time.Hour), QueueMax: 1024,
		Replicas: []control.ReplicaStatus{
			{ID: 1, Name: "replica-1", Port: 9111, Pid: 100, State: "ready", Inflight: 1, MaxInflight: 8, Limit: 8, Upgraded: 20, Requests: 21, StartedAt: &started},
			{ID: 2, Name: "replica-2", Port: 9112, Pid: 101, State: "ready", MaxInflight: 8, Limit: 8, Requests: 3, StartedAt: &started},
		},
	}
	var b strings.Builder
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := `instance default: pid 42, proxy port 9110, least_conn, 2/2 replicas ready, up 1h0m
command: python3 app.py
queue: 0 waiting (max 1024); rejected 0, retried 0, failed 0

REPLICA    PORT  PID  STATE  UPTIME  RESTARTS  LAST RESTART  INFLIGHT  REQUESTS  ERRORS  RPS  P50  P99  CPU   RSS  UPGRADED
replica-1  9111  100  ready  1m30s   0         -             1/8       21        0       0.0  -    -    0.0%  0B   20
replica-2  9112  101  ready  1m30s   0         -             0/8       3         0       0.0  -    -    0.0%  0B   0
`
	if b.String() != want {
		t.Errorf("status table:\n%s\nwant:\n%s", b.String(), want)
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
		got, err := parseGPUs(tt.in)
		if (err != nil) != tt.err || err == nil && fmt.Sprint(got) != tt.want {
			t.Errorf("parseGPUs(%q) = %v, %v; want %s (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
	smi := []byte("GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-8a1b)\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-9c2d)\n")
	if got := fmt.Sprint(gpusFromSMI(smi)); got != "[0 1]" {
		t.Errorf("gpusFromSMI = %s, want [0 1]", got)
	}
}

// TestWriteStatusAdaptive: under --max-inflight auto a LIMIT column shows
// each replica's learned cap, "-" for one with no process in rotation.
func TestWriteStatusAdaptive(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	started := now.Add(-90 * time.Second)
	st := control.Status{
		Name: "default", Port: 9110, Pid: 42, Desired: 2, Command: []string{"python3", "app.py"},
		Policy: "least_conn", StartedAt: now.Add(-time.Hour), QueueMax: 1024, MaxInflight: 64,
		AdaptiveInflight: &control.InflightBounds{Min: 1, Max: 64},
		Replicas: []control.ReplicaStatus{
			{ID: 1, Name: "replica-1", Port: 9111, Pid: 100, State: "ready", Inflight: 4, MaxInflight: 64, Limit: 5, Requests: 21, StartedAt: &started},
			{ID: 2, Name: "replica-2", Port: 9112, State: "starting", MaxInflight: 64},
		},
	}
	var b strings.Builder
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := `instance default: pid 42, proxy port 9110, least_conn, 1/2 replicas ready, up 1h0m
command: python3 app.py
queue: 0 waiting (max 1024); rejected 0, retried 0, failed 0

REPLICA    PORT  PID  STATE     UPTIME  RESTARTS  LAST RESTART  INFLIGHT  LIMIT  REQUESTS  ERRORS  RPS  P50  P99  CPU   RSS
replica-1  9111  100  ready     1m30s   0         -             4         5      21        0       0.0  -    -    0.0%  0B
replica-2  9112  -    starting  -       0         -             0         -      0         0       0.0  -    -    -     -
`
	if b.String() != want {
		t.Errorf("status table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestFormatMs: three significant digits at every scale, so the display
// keeps the quantiles' precision (within 5% even at a digit's turn).
func TestFormatMs(t *testing.T) {
	for _, c := range []struct {
		ms   float64
		want string
	}{{0, "-"}, {0.25, "250us"}, {1.049, "1.05ms"}, {9.996, "10.0ms"}, {50.44, "50.4ms"}, {99.96, "100ms"},
		{503.2, "503ms"}, {999.6, "1.00s"}, {1049, "1.05s"}, {6291, "6.29s"}, {12582, "12.6s"}, {99960, "100s"}, {720000, "720s"}} {
		if got := formatMs(c.ms); got != c.want {
			t.Errorf("formatMs(%v) = %q, want %q", c.ms, got, c.want)
		}
	}
}
