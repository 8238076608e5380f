package admin

import "github.com/prometheus/client_golang/prometheus"

// AccessLogDropSource is what a StatusSource also implements when it
// writes an access log; without it, MetricAccessLogLinesDropped stays 0.
type AccessLogDropSource interface {
	// AccessLogLinesDropped is how many access log lines were dropped so
	// far.
	AccessLogLinesDropped() uint64
}

var descAccessLogDropped = prometheus.NewDesc(MetricAccessLogLinesDropped,
	"Access log lines dropped because the log could not keep up with the requests (its file or stdout was slow or blocked) or a write to it failed.", nil, nil)

// accessLogDropCollector exports an AccessLogDropSource's count at scrape
// time.
type accessLogDropCollector struct{ src StatusSource }

func (c accessLogDropCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descAccessLogDropped }

func (c accessLogDropCollector) Collect(ch chan<- prometheus.Metric) {
	var n uint64
	if d, ok := c.src.(AccessLogDropSource); ok {
		n = d.AccessLogLinesDropped()
	}
	ch <- prometheus.MustNewConstMetric(descAccessLogDropped, prometheus.CounterValue, float64(n))
}
