package admin

import "github.com/prometheus/client_golang/prometheus"

// DropSource is what a StatusSource also implements when its output can
// drop lines; without it, MetricLogLinesDropped stays 0.
type DropSource interface {
	// LogLinesDropped is how many lines of output were dropped so far.
	LogLinesDropped() uint64
}

// AccessLogDropSource is what a StatusSource also implements when it
// writes an access log; without it, MetricAccessLogLinesDropped stays 0.
type AccessLogDropSource interface {
	// AccessLogLinesDropped is how many access log lines were dropped so
	// far.
	AccessLogLinesDropped() uint64
}

// OutputRateSource is what a StatusSource also implements when it bounds
// its replicas' output; without it, MetricOutputLinesOverRate stays 0.
type OutputRateSource interface {
	// OutputLinesOverRate is how many lines of replica output were
	// dropped so far because a replica wrote more than its rate.
	OutputLinesOverRate() uint64
}

// dropCounters export the dropped-line counts of src, read at scrape time.
func dropCounters(src StatusSource) []prometheus.Collector {
	counter := func(name, help string, read func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			if read == nil {
				return 0
			}
			return float64(read())
		})
	}
	var output, access, overRate func() uint64
	if d, ok := src.(DropSource); ok {
		output = d.LogLinesDropped
	}
	if d, ok := src.(AccessLogDropSource); ok {
		access = d.AccessLogLinesDropped
	}
	if d, ok := src.(OutputRateSource); ok {
		overRate = d.OutputLinesOverRate
	}
	return []prometheus.Collector{
		counter(MetricLogLinesDropped, "Lines of replica output and of mattingctl's log dropped because stdout or stderr was blocked past its buffer or gone (a closed pipe).", output),
		counter(MetricAccessLogLinesDropped, "Access log lines dropped because the log could not keep up with the requests (its file or stdout was slow or blocked) or a write to it failed.", access),
		counter(MetricOutputLinesOverRate, "Lines of replica output dropped because a replica wrote more than --output-rate bytes a second.", overRate),
	}
}
