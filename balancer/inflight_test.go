package balancer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/latency"
	"github.com/mattingctl/mattingctl/internal/testutil"
)

func TestInflightListKeepsTheOldest(t *testing.T) {
	be := NewBackend(1, "replica-1", "127.0.0.1:1")
	now := time.Now()
	at := func(ago time.Duration) *attempt { return &attempt{be: be, start: now.Add(-ago)} }
	a, b, c := at(30*time.Second), at(20*time.Second), at(10*time.Second)
	if be.OldestInflight() != 0 {
		t.Fatal("an idle backend has an oldest request")
	}
	for _, x := range []*attempt{a, b, c} {
		be.startLocked(x)
	}
	near := func(want time.Duration) {
		t.Helper()
		if got := be.OldestInflight(); got < want || got > want+5*time.Second {
			t.Fatalf("oldest in flight %s, want about %s", got, want)
		}
	}
	near(30 * time.Second)
	be.endLocked(b) // the middle one: the oldest stays
	near(30 * time.Second)
	be.endLocked(a) // the oldest: the next takes its place
	near(10 * time.Second)
	if be.InFlight() != 3 || be.head != c || be.tail != c {
		t.Fatalf("after two ends: inflight counter %d (release decrements it), head %p tail %p, want c %p", be.InFlight(), be.head, be.tail, c)
	}
	be.endLocked(c)
	if be.OldestInflight() != 0 || be.head != nil || be.tail != nil {
		t.Fatal("list not empty after every attempt ended")
	}
}

func TestOldestInflightThroughTheProxy(t *testing.T) {
	g := newGate()
	tb := newTestBackend(t, 1, g.handler)
	_, srv := newTestBalancer(t, testOptions(nil), tb.Backend)
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-g.arrived
	testutil.WaitFor(t, 5*time.Second, "the held request to age", func() bool {
		return tb.OldestInflight() >= 50*time.Millisecond
	})
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "no request in flight", func() bool { return tb.OldestInflight() == 0 })
}

func TestLatencyP99(t *testing.T) {
	t0 := time.Now()
	var h latencyHist
	for range minP99Samples - 1 {
		h.observe(10*time.Millisecond, t0)
	}
	if _, ok := h.quantile(0.99, t0); ok {
		t.Fatalf("a p99 from %d samples", minP99Samples-1)
	}
	h.observe(10*time.Millisecond, t0)
	if p, ok := h.quantile(0.99, t0); !ok || p < 10*time.Millisecond || p > 10400*time.Microsecond {
		t.Fatalf("p99 of %d samples of 10ms: %s, %v", minP99Samples, p, ok)
	}

	h = latencyHist{}
	for range 990 {
		h.observe(10*time.Millisecond, t0)
	}
	for range 10 { // 1%: the p99 is still 10ms
		h.observe(2*time.Second, t0)
	}
	if p, _ := h.quantile(0.99, t0); p < 10*time.Millisecond || p > 10400*time.Microsecond {
		t.Errorf("p99 with 1%% slow: %s, want 10ms (at most 1/32 over)", p)
	}
	for range 11 { // now over 1%
		h.observe(2*time.Second, t0)
	}
	if p, _ := h.quantile(0.99, t0); p < 2*time.Second || p > 2070*time.Millisecond {
		t.Errorf("p99 with over 1%% slow: %s, want 2s (at most 1/32 over)", p)
	}
	// The samples count for 50 to 60 seconds, then are forgotten.
	if _, ok := h.quantile(0.99, t0.Add(49*time.Second)); !ok {
		t.Error("samples forgotten within 50s")
	}
	if _, ok := h.quantile(0.99, t0.Add(61*time.Second)); ok {
		t.Error("samples kept after a minute")
	}
}

// BenchmarkAcquireRelease is the hot path's cost under the lock: choosing
// a backend, counting the attempt in flight (and in the backend's list of
// them) and releasing it with a response time.
func BenchmarkAcquireRelease(b *testing.B) {
	bal := New(testOptions(func(o *Options) { o.MaxInflight = 8; o.Queue = 1024 }))
	for i := 1; i <= 4; i++ {
		bal.Add(NewBackend(i, "replica-"+strconv.Itoa(i), "127.0.0.1:1"))
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a, err := bal.acquire(ctx, r, time.Time{}, false, nil)
			if err != nil {
				b.Error(err)
				return
			}
			bal.release(a, time.Millisecond)
		}
	})
}

func TestLatencyStats(t *testing.T) {
	bal := New(testOptions(nil))
	be, prev := NewBackend(1, "replica-1", "127.0.0.1:1"), NewBackend(1, "replica-1", "127.0.0.1:2")
	if st := bal.Latency(NewBackend(2, "replica-2", "127.0.0.1:3"), nil); st != (LatencyStats{}) {
		t.Fatalf("an idle backend: %+v", st)
	}
	// 20 responses a second for 12 seconds, ending a second ago: 90% of
	// 10ms on be, 10% of 1s on its predecessor.
	now := time.Now()
	bal.mu.Lock()
	for s := 12; s >= 1; s-- {
		at := now.Add(-time.Duration(s) * time.Second)
		for i := range 20 {
			if i < 18 {
				be.observe(10*time.Millisecond, at)
			} else {
				prev.observe(time.Second, at)
			}
		}
	}
	bal.mu.Unlock()
	st := bal.Latency(be, prev)
	if st.Responses != 240 {
		t.Errorf("responses in the last minute: %d, want 240", st.Responses)
	}
	if st.RPS < 19 || st.RPS > 21 {
		t.Errorf("rps %.1f, want 20 (10 whole seconds of 20)", st.RPS)
	}
	if st.P50 < 9500*time.Microsecond || st.P50 > 10500*time.Microsecond {
		t.Errorf("p50 %s, want 10ms within 5%%", st.P50)
	}
	if st.P95 < 950*time.Millisecond || st.P95 > 1050*time.Millisecond {
		t.Errorf("p95 %s, want 1s within 5%%: the predecessor's responses count", st.P95)
	}
	if st.P99 < 950*time.Millisecond || st.P99 > 1050*time.Millisecond || st.P99 < st.P95 {
		t.Errorf("p99 %s, want 1s within 5%%, not below p95 %s", st.P99, st.P95)
	}
	if want := (18*10*time.Millisecond + 2*time.Second) / 20; st.LastCount != 20 || st.LastMean != want {
		t.Errorf("last second: %d responses, mean %s; want 20, %s", st.LastCount, st.LastMean, want)
	}
	if st := bal.Latency(be); st.RPS < 17 || st.RPS > 19 {
		t.Errorf("one backend alone: rps %.1f, want 18", st.RPS)
	}
}

// The rate forgets seconds older than 10, and every slot of a long idle
// backend is cleared.
func TestLatencyStatsForget(t *testing.T) {
	var h latencyHist
	t0 := time.Now()
	h.observe(time.Millisecond, t0)
	h.rotate(t0.Add(20 * time.Second))
	for i, n := range h.count {
		if n != 0 {
			t.Fatalf("slot %d still counts %d after 20s", i, n)
		}
	}
	h.rotate(t0.Add(10 * time.Minute))
	var all latency.Counts
	h.win.AddTo(&all)
	if _, ok := all.Quantile(0.5); ok {
		t.Fatal("a response counted 10 minutes later")
	}
}
