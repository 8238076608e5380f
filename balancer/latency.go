package balancer

import "time"

// LatencyStats sums up a replica's recent responses, for status and the
// dashboard.
type LatencyStats struct {
	// P50 and P99 are quantiles of the response times of the last 50 to
	// 60 seconds (each the upper bound of its histogram bucket, at most
	// 1.5 times the true value); Responses counts those responses. Both
	// quantiles are 0 when Responses is.
	P50, P99  time.Duration
	Responses uint64
	// RPS is responses per second over the last 10 whole seconds.
	RPS float64
	// LastCount is the number of responses in the last whole second and
	// LastMean their mean response time (0 when none).
	LastCount uint64
	LastMean  time.Duration
}

// Latency returns the recent responses of bes together (a replica's
// current process and a predecessor still draining; nil ones are
// skipped). It takes the balancer's lock once, for a few hundred
// additions per backend.
func (b *Balancer) Latency(bes ...*Backend) LatencyStats {
	now := time.Now()
	var all [histBuckets]uint64
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
		h.addTo(&all)
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
	for _, n := range all {
		st.Responses += n
	}
	st.P50, _ = quantileOf(&all, 0.5, 1)
	st.P99, _ = quantileOf(&all, 0.99, 1)
	st.RPS = float64(recent) / rateSeconds
	if st.LastCount > 0 {
		st.LastMean = lastSum / time.Duration(st.LastCount)
	}
	return st
}

// LatencyBuckets is the number of buckets of LatencyBucket: other
// histograms of response times (the dashboard's) use the same scale.
const LatencyBuckets = histBuckets

// LatencyBucket returns the bucket, 0 to LatencyBuckets-1, of a response
// time d: two buckets to an octave of microseconds.
func LatencyBucket(d time.Duration) int { return bucketOf(d) }

// LatencyBucketUpper returns the end of bucket i.
func LatencyBucketUpper(i int) time.Duration { return bucketUpper(i) }
