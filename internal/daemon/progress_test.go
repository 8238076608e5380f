package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// TestStartProgress: a line when each replica becomes ready, once, and
// every 10s a line for each that is not, with why.
func TestStartProgress(t *testing.T) {
	var out strings.Builder
	begun := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	p := newStartProgress(&out, begun)
	r1 := control.ReplicaStatus{Name: "replica-1", State: control.Starting, Port: 9111, Pid: 41, NotReady: "no listener on 127.0.0.1:9111 (connection refused)"}
	r2 := control.ReplicaStatus{Name: "replica-2", State: control.Starting, Port: 9112, Pid: 42, NotReady: "GET /healthz -> 404"}
	at := func(d time.Duration, rs ...control.ReplicaStatus) {
		p.update(control.Status{Desired: 2, Replicas: rs}, begun.Add(d))
	}
	at(time.Second, r1, r2)
	r1.State, r1.NotReady = control.Ready, ""
	at(1500*time.Millisecond, r1, r2)
	at(2*time.Second, r1, r2)
	at(10*time.Second, r1, r2)
	at(15*time.Second, r1, r2)
	r2.State, r2.NotReady, r2.Error = control.Backoff, "", "port 9112 is already in use"
	at(20*time.Second, r1, r2)
	want := "replica-1 ready after 1.5s: pid 41, port 9111\n" +
		"replica-2 not ready after 10s: GET /healthz -> 404\n" +
		"replica-2 not ready after 20s: backoff: port 9112 is already in use\n"
	if out.String() != want {
		t.Errorf("progress:\n%s\nwant:\n%s", out.String(), want)
	}
	newStartProgress(nil, begun).update(control.Status{Replicas: []control.ReplicaStatus{r1}}, begun) // writes nowhere
}

// TestLastErrorQuotes: an error that quotes the replica's output keeps its
// quoted lines, and only those.
func TestLastErrorQuotes(t *testing.T) {
	log := "12:00:00.100 [INFO]  mattingctl: starting replicas\n" +
		"replica-2 | Port 5000 is in use by another program.\n" +
		"mattingctl: replica-2 (port 9112) exited before becoming ready (exit code 1); its last lines of output:\n" +
		"  replica-2 | Address already in use\n" +
		"  replica-2 | Port 5000 is in use by another program.\n" +
		"replica-1 | a late line\n" +
		"  not a continuation any more\n"
	path := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "replica-2 (port 9112) exited before becoming ready (exit code 1); its last lines of output:\n" +
		"  replica-2 | Address already in use\n  replica-2 | Port 5000 is in use by another program."
	if err := lastError(path, 0); err == nil || err.Error() != want {
		t.Errorf("lastError = %q, want %q", err, want)
	}
}
