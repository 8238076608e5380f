package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

func TestWriteStatusUnhealthy(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	started := now.Add(-90 * time.Second)
	st := control.Status{
		Name: "default", Port: 9110, Pid: 42, Desired: 2, Command: []string{"app"}, Policy: "least_conn", StartedAt: now.Add(-time.Hour),
		Replicas: []control.ReplicaStatus{
			{ID: 1, Name: "replica-1", Port: 9111, Pid: 100, State: control.Unhealthy, Inflight: 8, MaxInflight: 8, Limit: 8, OldestInflightMs: 12400,
				StartedAt: &started, HealthError: `Get "http://127.0.0.1:9111/health": context deadline exceeded`},
			{ID: 2, Name: "replica-2", Port: 9112, State: control.Backoff, Restarts: 1, LastRestart: "crash: signal killed",
				Error: "starting replica-2: pipe2: too many open files"},
		},
	}
	var b strings.Builder
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"replica-1  9111  100  unhealthy  1m30s   0         -                     8/8 (oldest 12s)",
		`replica-1 (unhealthy): last liveness check failed: Get "http://127.0.0.1:9111/health": context deadline exceeded`,
		"replica-2 (backoff): starting replica-2: pipe2: too many open files",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status table lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "replica-2 failed") {
		t.Errorf("a replica in backoff is shown as failed:\n%s", b.String())
	}
}
