package e2e

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the admin listener's /metrics at admin, parsed.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	return families
}

// metricValue reads the one unlabelled counter or gauge called name from
// /metrics at admin.
func metricValue(t *testing.T, admin, name string) float64 {
	t.Helper()
	f := scrape(t, admin)[name]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("/metrics has no single %s", name)
	}
	m := f.GetMetric()[0]
	if f.GetType() == dto.MetricType_GAUGE {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

// requestsTotal sums mattingctl_requests_total over its labels; 0 before
// the first request.
func requestsTotal(t *testing.T, admin string) float64 {
	t.Helper()
	total := 0.0
	for _, m := range scrape(t, admin)["mattingctl_requests_total"].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	return total
}
