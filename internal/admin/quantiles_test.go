package admin

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// quantileGauges scrapes m and returns its quantile gauges by quantile.
func quantileGauges(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	_, body := get(t, m.Handler(), "/metrics")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	fam := fams[MetricRequestDurationQuantile]
	if fam == nil {
		t.Fatalf("/metrics lacks %s", MetricRequestDurationQuantile)
	}
	got := map[string]float64{}
	for _, mt := range fam.GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "quantile" {
				got[l.GetValue()] = mt.GetGauge().GetValue()
			}
		}
	}
	return got
}

// The quantile gauges cover the last minute of what the history counted,
// all replicas together, within 5%; NaN before any response.
func TestQuantileGauges(t *testing.T) {
	m := NewMetrics(&fakeSource{})
	h := NewHistory(m)
	for q, v := range quantileGauges(t, m) {
		if !math.IsNaN(v) {
			t.Errorf("quantile %s before any response: %v, want NaN", q, v)
		}
	}
	now := time.Now()
	h.Record(now.Add(-3*time.Second), Sample{})
	// 90% at 50 ms, 7% at 200 ms, 3% at 500 ms, over two seconds and
	// two replicas.
	for i := range 1000 {
		d, replica := 50*time.Millisecond, "replica-1"
		switch {
		case i%100 >= 97:
			d, replica = 500*time.Millisecond, "replica-2"
		case i%100 >= 90:
			d = 200 * time.Millisecond
		}
		m.Observe(replica, 200, d)
		if i == 500 {
			h.Record(now.Add(-2*time.Second), Sample{})
		}
	}
	h.Record(now.Add(-time.Second), Sample{})
	got := quantileGauges(t, m)
	for q, want := range map[string]float64{"0.5": 0.05, "0.95": 0.2, "0.99": 0.5} {
		if v := got[q]; math.Abs(v-want) > 0.05*want {
			t.Errorf("quantile %s = %v s, want %v within 5%%", q, v, want)
		}
	}
	if len(got) != len(exportedQuantiles) {
		t.Errorf("quantiles %v, want %v", got, exportedQuantiles)
	}
}
