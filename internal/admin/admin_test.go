package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mattingctl/mattingctl/internal/control"
)

// fakeSource is an instance whose readiness and status are its fields and
// whose Ping blocks while hang is held.
type fakeSource struct {
	mu     sync.Mutex
	rd     Readiness
	status control.Status
	hang   sync.Mutex
}

func (f *fakeSource) Readiness() Readiness {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rd
}

func (f *fakeSource) Ping() {
	f.hang.Lock()
	f.hang.Unlock() //nolint:staticcheck // blocking while held is the point
}

func (f *fakeSource) Status() control.Status { return f.status }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	// As a client of the default, loopback, admin listener asks.
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9109"+path, nil))
	return rec.Code, rec.Body.String()
}

func TestReadyz(t *testing.T) {
	src := &fakeSource{}
	h := handler(src, nil, newHeartbeat(time.Minute))
	tests := []struct {
		rd   Readiness
		code int
	}{
		{Readiness{Ready: 2, MinReady: 1}, 200},
		{Readiness{Ready: 2, MinReady: 2}, 200},
		{Readiness{Ready: 1, MinReady: 2}, 503},
		{Readiness{Ready: 0, MinReady: 1}, 503},
		{Readiness{Ready: 4, MinReady: 1, Stopping: true}, 503},
	}
	for _, tt := range tests {
		src.mu.Lock()
		src.rd = tt.rd
		src.mu.Unlock()
		code, body := get(t, h, "/readyz")
		var got Readiness
		if err := json.Unmarshal([]byte(body), &got); err != nil || code != tt.code || got != tt.rd {
			t.Errorf("%+v: /readyz %d %s, want %d", tt.rd, code, body, tt.code)
		}
	}
	if code, _ := get(t, h, "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics without metrics: %d", code)
	}
}

// TestLivez: /livez fails once the instance has not answered a ping for
// the liveness timeout, and recovers when it answers again.
func TestLivez(t *testing.T) {
	src := &fakeSource{}
	hb := newHeartbeat(200 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hb.run(ctx, src, 20*time.Millisecond) }()
	defer func() { cancel(); src.hang.TryLock(); src.hang.Unlock(); <-done }()
	h := handler(src, nil, hb)
	if code, _ := get(t, h, "/livez"); code != 200 {
		t.Fatalf("/livez of a responsive instance: %d", code)
	}
	src.hang.Lock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, h, "/livez")
		if code == 503 && strings.Contains(body, "supervisor unresponsive for") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/livez of a hung instance still %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	src.hang.Unlock()
	deadline = time.Now().Add(5 * time.Second)
	for code, _ := get(t, h, "/livez"); code != 200; code, _ = get(t, h, "/livez") {
		if time.Now().After(deadline) {
			t.Fatal("/livez did not recover once the instance answered again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	src.hang.Lock() // for the deferred unlock
}

func TestMetrics(t *testing.T) {
	src := &fakeSource{status: control.Status{Desired: 2, Autoscale: &control.AutoscaleStatus{Min: 1, Max: 6, On: true, Target: 3}, MaxInflight: 8, Queued: 3, Rejected: 5, Retried: 1, Failed: 2, Conns: 17, MaxConns: 19856,
		Replicas: []control.ReplicaStatus{
			{Name: "replica-1", State: control.Ready, Inflight: 4, Limit: 5, CPUPercent: 50, RSSBytes: 1 << 20},
			{Name: "replica-2", State: control.Backoff},
		}}}
	m := NewMetrics(src)
	m.Observe("replica-1", 200, 30*time.Millisecond)
	m.Observe("", 503, time.Millisecond)
	m.Restarted("replica-2", "crash")
	code, body := get(t, m.Handler(), "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	for _, name := range append(MetricNames, "go_goroutines", "process_resident_memory_bytes", "process_open_fds") {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	value := func(name, replica string) float64 {
		for _, m := range fams[name].GetMetric() {
			match := replica == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "replica" && l.GetValue() == replica {
					match = true
				}
			}
			if match {
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
		t.Fatalf("%s{replica=%q} missing", name, replica)
		return 0
	}
	checks := []struct {
		name, replica string
		want          float64
	}{
		{MetricInflight, "replica-1", 4}, {MetricReplicaUp, "replica-1", 1}, {MetricReplicaUp, "replica-2", 0},
		{MetricMaxInflight, "", 8}, {MetricQueueLength, "", 3}, {MetricRejected, "", 5}, {MetricFailed, "", 2},
		{MetricReplicasDesired, "", 2}, {MetricRestarts, "replica-2", 1}, {MetricRequestDuration, "replica-1", 1},
		{MetricReplicaRSS, "replica-1", 1 << 20}, {MetricConns, "", 17}, {MetricMaxConns, "", 19856},
		{MetricReplicaLimit, "replica-1", 5}, {MetricReplicaLimit, "replica-2", 0},
	}
	for _, c := range checks {
		if got := value(c.name, c.replica); got != c.want {
			t.Errorf("%s{replica=%q} = %v, want %v", c.name, c.replica, got, c.want)
		}
	}
}

func TestListen(t *testing.T) {
	a, err := Listen("none", 8)
	if err != nil || a != nil || a.Addr() != "" {
		t.Fatalf("Listen(none) = %v, %v", a, err)
	}
	a.Start(nil, nil, nil) // no-ops on a nil server
	a.Close()
	a, err = Listen("127.0.0.1:0", 8)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := Listen(a.Addr(), 8); err == nil || !strings.Contains(err.Error(), "already in use; choose another with --admin") {
		t.Errorf("a second listener on %s: %v", a.Addr(), err)
	}
	src := &fakeSource{rd: Readiness{Ready: 1, MinReady: 1}}
	a.Start(src, NewMetrics(src).Handler(), nil)
	resp, err := http.Get("http://" + a.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"ready": 1`) {
		t.Errorf("/readyz over the listener: %d %s", resp.StatusCode, b)
	}
}
