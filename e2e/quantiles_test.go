package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/internal/testutil"
)

// TestLatencyQuantiles: three groups of replicas answering in 50 ms
// (three of them), 200 ms and 500 ms behind the proxy, under a steady
// load that keeps every replica at its cap, so that about 88% of the
// responses take 50 ms, 8% 200 ms and 3.5% 500 ms. status's p50 and p99
// of the instance are within 5% of the exact ones (from the access log,
// each response's time less its time queued) and near 50 ms and 500 ms;
// /metrics' quantile gauges are within 5% of the access log's; and the
// dashboard's seconds have three different quantiles, p50 < p95 < p99.
// (Two groups alone would put p95 and p99 in the same one.)
func TestLatencyQuantiles(t *testing.T) {
	t.Parallel()
	log := filepath.Join(t.TempDir(), "access.json")
	in := start(t, 5, "--max-inflight", "4", "--health", "/health", "--access-log", log, "--access-log-format", "json",
		"--", fakemodel, "-services", "50ms,50ms,50ms,200ms,500ms")
	st := in.waitReady(5)
	load := startLoad(in.url("/"), 20) // 5 replicas x 4: all busy, none queued for long
	time.Sleep(12 * time.Second)
	ok, failures, _ := load.finish()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed under load, the first: %s", len(failures), failures[0])
	}
	status := in.status().Latency
	var lines []quantileLine
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("%d access log lines", ok), func() bool {
		lines = quantileLines(t, log)
		return len(lines) >= ok
	})
	// The history adds a second's responses once the second is over.
	time.Sleep(2 * time.Second)
	gauges := map[string]float64{}
	for _, m := range scrape(t, st.Admin)["mattingctl_request_duration_quantile_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "quantile" {
				gauges[l.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	dash := dashboardSeries(t, st.Admin)

	var total, served []float64 // milliseconds: arrival to answer; from the replica's dispatch
	for _, l := range lines {
		total = append(total, l.DurationMs)
		served = append(served, l.DurationMs-l.QueuedMs)
	}
	if status.Responses != uint64(len(lines)) {
		t.Errorf("status counts %d responses in the last minute, the access log %d", status.Responses, len(lines))
	}
	for _, c := range []struct {
		what           string
		got, exact, at float64
	}{
		{"status p50", status.P50Ms, exactQuantile(served, 0.5), 50},
		{"status p95", status.P95Ms, exactQuantile(served, 0.95), 0},
		{"status p99", status.P99Ms, exactQuantile(served, 0.99), 500},
		{"/metrics 0.5", gauges["0.5"] * 1000, exactQuantile(total, 0.5), 50},
		{"/metrics 0.95", gauges["0.95"] * 1000, exactQuantile(total, 0.95), 0},
		{"/metrics 0.99", gauges["0.99"] * 1000, exactQuantile(total, 0.99), 500},
	} {
		t.Logf("%s: %.2f ms, exact %.2f ms", c.what, c.got, c.exact)
		if math.Abs(c.got-c.exact) > 0.05*c.exact {
			t.Errorf("%s = %.2f ms, the access log's exact one %.2f ms: more than 5%% apart", c.what, c.got, c.exact)
		}
		// The replicas' own time is their sleep plus a little: on a busy
		// machine with a race-built proxy, a few milliseconds (5 at most seen).
		// p95 falls at the top of the 200 ms group's share (88% to 96%),
		// where a busy machine's delays pile up (237 ms seen in CI): it is
		// held to the exact one only.
		if c.at > 0 && (c.got < 0.95*c.at || c.got > 1.05*c.at+10) {
			t.Errorf("%s = %.2f ms, want the replicas' %.0f ms within 5%% (and 10 ms of overhead)", c.what, c.got, c.at)
		}
	}

	// The dashboard: the median over the seconds of each quantile's line,
	// p50 near the fast replicas', p95 the middle one's, p99 the slow one's.
	med := func(col []*float64) float64 {
		var vs []float64
		for _, v := range col {
			if v != nil {
				vs = append(vs, *v)
			}
		}
		if len(vs) == 0 {
			return 0
		}
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	p50, p95, p99 := med(dash.P50), med(dash.P95), med(dash.P99)
	t.Logf("the dashboard's seconds, median: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", p50, p95, p99)
	if !(p50 > 0 && 2*p50 < p95 && 1.5*p95 < p99) {
		t.Errorf("the dashboard's quantiles p50 %.1f, p95 %.1f, p99 %.1f ms: want three different ones, about 50, 200 and 500", p50, p95, p99)
	}
}

// quantileLine is what TestLatencyQuantiles reads of an access log line.
type quantileLine struct {
	Status     int     `json:"status"`
	DurationMs float64 `json:"duration_ms"`
	QueuedMs   float64 `json:"queued_ms"`
}

// quantileLines reads every line of the JSON access log at path.
func quantileLines(t *testing.T, path string) []quantileLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var lines []quantileLine
	for _, raw := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		var l quantileLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return lines // a line being written
		}
		if l.Status != http.StatusOK {
			t.Errorf("access log line with status %d: %s", l.Status, raw)
		}
		lines = append(lines, l)
	}
	return lines
}

// exactQuantile is quantile q of vs by nearest rank.
func exactQuantile(vs []float64, q float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}

// dashboardQuantiles is the quantile columns of GET /api/dashboard's
// series (null: no response that second).
type dashboardQuantiles struct {
	P50 []*float64 `json:"p50_ms"`
	P95 []*float64 `json:"p95_ms"`
	P99 []*float64 `json:"p99_ms"`
}

func dashboardSeries(t *testing.T, admin string) dashboardQuantiles {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/api/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var state struct {
		Series dashboardQuantiles `json:"series"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&state); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/dashboard: %d, %v", resp.StatusCode, err)
	}
	return state.Series
}
