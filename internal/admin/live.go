package admin

import (
	"sync/atomic"
	"time"

	"github.com/mattingctl/mattingctl/internal/latency"
)

// Outcomes of a request, as the dashboard counts them. The proxy's own
// 503s (rejections) are among the 5xx here; the history tells them apart
// with the balancer's count of rejections.
const (
	outcomeOK  = iota // 1xx, 2xx, 3xx
	outcome4xx        // 4xx, 499 (the client went away) included
	outcome5xx
	outcomes
)

// live counts every request the proxy answers, by outcome, and their
// response times on internal/latency's scale, since the start. Atomic
// adds only: the history sampler reads it once a second and works out
// rates and quantiles from the differences.
type live struct {
	outcome [outcomes]atomic.Uint64
	buckets [latency.Buckets]atomic.Uint64
}

func (l *live) observe(replica string, code int, d time.Duration) {
	l.outcome[outcomeOf(code)].Add(1)
	l.buckets[latency.Bucket(d)].Add(1)
}

// outcomeOf classifies a request answered with code.
func outcomeOf(code int) int {
	switch {
	case code >= 500:
		return outcome5xx
	case code >= 400:
		return outcome4xx
	default:
		return outcomeOK
	}
}

// liveSnapshot is live's counts at one moment.
type liveSnapshot struct {
	outcome [outcomes]uint64
	buckets latency.Counts
}

func (l *live) snapshot() liveSnapshot {
	var s liveSnapshot
	for i := range l.outcome {
		s.outcome[i] = l.outcome[i].Load()
	}
	for i := range l.buckets {
		s.buckets[i] = l.buckets[i].Load()
	}
	return s
}
