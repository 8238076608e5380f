package tune

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestDrive: the clients send the request as given, the warm-up is not
// counted, failures are counted apart with the first one named, and the
// latencies are the server's.
func TestDrive(t *testing.T) {
	var n, bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/predict" || r.Header.Get("Content-Type") != "application/json" || string(body) != `{"x":1}` {
			bad.Add(1)
		}
		time.Sleep(20 * time.Millisecond)
		if n.Add(1)%10 == 0 {
			http.Error(w, "every tenth fails", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	req := Request{Method: http.MethodPost, Target: "/predict", Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"x":1}`)}
	m, err := Drive(context.Background(), srv.URL, req, Load{Clients: 4, Warmup: 200 * time.Millisecond, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Load() > 0 {
		t.Fatalf("%d requests were not the request given", bad.Load())
	}
	// 4 clients at ~20ms: ~200 a second at most; a tenth fail.
	if m.Throughput() < 50 || m.Throughput() > 200 {
		t.Errorf("throughput %.1f, want 50-200 (4 clients at 20ms)", m.Throughput())
	}
	if m.Errors == 0 || m.Errors > m.Requests/4 || !strings.Contains(m.FirstFail, "500") {
		t.Errorf("%d errors of %d, first %q; want about a tenth, a 500", m.Errors, m.Requests, m.FirstFail)
	}
	if m.P50 < 20*time.Millisecond || m.P99 < m.P50 || m.P99 > time.Second {
		t.Errorf("p50 %s p99 %s; want at least the 20ms of service, p99 >= p50", m.P50, m.P99)
	}
	if total := n.Load(); int64(m.Requests+m.Errors) >= total {
		t.Errorf("%d counted of %d sent: the warm-up's were counted", m.Requests+m.Errors, total)
	}
}

func TestDriveEndsWithContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begun := time.Now()
	_, err := Drive(ctx, srv.URL, Request{Method: http.MethodGet, Target: "/"}, Load{Clients: 2, Duration: time.Minute})
	if err == nil || time.Since(begun) > 5*time.Second {
		t.Errorf("Drive returned %v after %s; want ctx's error at once", err, time.Since(begun))
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("p50 %s p99 %s, want 50ms 99ms", p50, p99)
	}
	if percentile(nil, 0.99) != 0 || percentile(lat[:1], 0.99) != time.Millisecond {
		t.Error("percentile of none or one")
	}
}

func TestTableAndChart(t *testing.T) {
	ms := time.Millisecond
	rs := []Result{result(4, 40, 200*ms, 0), result(8, 41, 400*ms, 2)}
	rs[0].Clients, rs[0].RSS = 8, 300<<20
	rs[1].Layout.Inflight, rs[1].Limits = Auto, []int{4, 5}
	var b bytes.Buffer
	if err := WriteTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "REPLICAS") || !strings.Contains(lines[1], "300MiB") || !strings.Contains(lines[2], "auto (4,5)") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	if err := WriteChart(&b, rs, 0); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	for _, s := range []string{"<svg", "1x2 inflight 4 (best)", "1x2 inflight auto (2 errors)", "requests/s", "p99 (ms)", "</svg>"} {
		if !strings.Contains(svg, s) {
			t.Errorf("chart lacks %q", s)
		}
	}
}

func TestNiceCeil(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{0, 1}, {0.3, 1}, {7, 10}, {12, 20}, {41, 50}, {230, 250}, {999, 1000}} {
		if got := niceCeil(c.in); got != c.want {
			t.Errorf("niceCeil(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
