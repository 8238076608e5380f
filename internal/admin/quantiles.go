package admin

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mattingctl/mattingctl/internal/latency"
)

// exportedQuantiles are the quantiles /metrics exports as gauges.
var exportedQuantiles = []float64{0.5, 0.95, 0.99}

// recentLatency holds the last minute of the response times Metrics
// observes, for its quantile gauges. The history adds each second's once
// a second, from the counts it takes anyway, so that a request pays
// nothing more for it.
type recentLatency struct {
	mu sync.Mutex // guards w
	w  latency.Window
}

func (r *recentLatency) add(c *latency.Counts, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.Add(c, now)
}

// counts returns the counts of the last 50 to 60 seconds before now.
func (r *recentLatency) counts(now time.Time) *latency.Counts {
	var c latency.Counts
	r.mu.Lock()
	r.w.Rotate(now)
	r.w.AddTo(&c)
	r.mu.Unlock()
	return &c
}

// quantileCollector exports the quantiles of the last minute's response
// times at scrape time, as a summary's quantiles would be, but computed
// from internal/latency's fine histogram rather than a stream, and as
// gauges of a name of their own: the histogram already has
// MetricRequestDuration's.
type quantileCollector struct{ recent *recentLatency }

var descQuantile = prometheus.NewDesc(MetricRequestDurationQuantile,
	"Quantiles of the time from a request's arrival to its answer, queueing included (as "+MetricRequestDuration+
		"), over the last 50 to 60 seconds, all replicas together; each within 3.2% of the true value. NaN when no request was answered in that time.",
	[]string{"quantile"}, nil)

func (c *quantileCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descQuantile }

func (c *quantileCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.recent.counts(time.Now())
	qs := counts.Quantiles(exportedQuantiles...)
	none := counts.Total() == 0
	for i, q := range exportedQuantiles {
		v := qs[i].Seconds()
		if none {
			v = math.NaN()
		}
		ch <- prometheus.MustNewConstMetric(descQuantile, prometheus.GaugeValue, v, strconv.FormatFloat(q, 'g', -1, 64))
	}
}
