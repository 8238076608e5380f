package balancer

import (
	"time"

	"github.com/mattingctl/mattingctl/internal/latency"
)

// LatencyStats sums up a replica's recent responses, for status and the
// dashboard.
type LatencyStats struct {
	// P50, P95 and P99 are quantiles of the response times of the last 50
	// to 60 seconds, each within about 3% of the true value
	// (internal/latency); Responses counts those responses. The
	// quantiles are 0 when Responses is.
	P50, P95, P99 time.Duration
	Responses     uint64
	// RPS is responses per second over the last 10 whole seconds.
	RPS float64
	// LastCount is the number of responses in the last whole second and
	// LastMean their mean response time (0 when none).
	LastCount uint64
	LastMean  time.Duration
}

// Latency returns the recent responses of bes together (a replica's
// current process and a predecessor still draining, or every replica's
// for the instance; nil ones are skipped). It takes the balancer's lock
// once, for a pass over latency.Buckets counts per backend; the
// quantiles are read after it is released.
func (b *Balancer) Latency(bes ...*Backend) LatencyStats {
	now := time.Now()
	var all latency.Counts
	var st LatencyStats
	var recent uint64
	var lastSum time.Duration
	b.mu.Lock()
	for _, be := range bes {
		if be == nil {
			continue
		}
		h := &be.hist
		h.rotate(now)
		h.win.AddTo(&all)
		for n := max(h.second-rateSeconds, 0); n < h.second; n++ {
			recent += uint64(h.count[n%rateSlots])
		}
		if h.second > 0 {
			last := (h.second - 1) % rateSlots
			st.LastCount += uint64(h.count[last])
			lastSum += h.sum[last]
		}
	}
	b.mu.Unlock()
	st.Responses = all.Total()
	q := all.Quantiles(0.5, 0.95, 0.99)
	st.P50, st.P95, st.P99 = q[0], q[1], q[2]
	st.RPS = float64(recent) / rateSeconds
	if st.LastCount > 0 {
		st.LastMean = lastSum / time.Duration(st.LastCount)
	}
	return st
}
