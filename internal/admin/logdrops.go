package admin

import "github.com/prometheus/client_golang/prometheus"

// DropSource is what a StatusSource also implements when its output can
// drop lines; without it, MetricLogLinesDropped stays 0.
type DropSource interface {
	// LogLinesDropped is how many lines of output were dropped so far.
	LogLinesDropped() uint64
}

var descLogDropped = prometheus.NewDesc(MetricLogLinesDropped,
	"Lines of replica output and of mattingctl's log dropped because stdout or stderr was blocked past its buffer or gone (a closed pipe).", nil, nil)

// dropCollector exports a DropSource's count at scrape time.
type dropCollector struct{ src StatusSource }

func (c dropCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descLogDropped }

func (c dropCollector) Collect(ch chan<- prometheus.Metric) {
	var n uint64
	if d, ok := c.src.(DropSource); ok {
		n = d.LogLinesDropped()
	}
	ch <- prometheus.MustNewConstMetric(descLogDropped, prometheus.CounterValue, float64(n))
}
