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
	var sum latencySum
	sum.add(b, time.Now(), bes)
	return sum.stats()
}

// LatencyOf is Latency of backends of several balancers together: parts
// maps each balancer to its backends (an instance of several services).
func LatencyOf(parts map[*Balancer][]*Backend) LatencyStats {
	var sum latencySum
	now := time.Now()
	for b, bes := range parts {
		sum.add(b, now, bes)
	}
	return sum.stats()
}

// latencySum adds up backends' recent responses.
type latencySum struct {
	all     latency.Counts
	st      LatencyStats
	recent  uint64
	lastSum time.Duration
}

// add adds bes, b's backends, under b's lock.
func (s *latencySum) add(b *Balancer, now time.Time, bes []*Backend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, be := range bes {
		if be == nil {
			continue
		}
		h := &be.hist
		h.rotate(now)
		h.win.AddTo(&s.all)
		for n := max(h.second-rateSeconds, 0); n < h.second; n++ {
			s.recent += uint64(h.count[n%rateSlots])
		}
		if h.second > 0 {
			last := (h.second - 1) % rateSlots
			s.st.LastCount += uint64(h.count[last])
			s.lastSum += h.sum[last]
		}
	}
}

// stats reads the sum's quantiles and rates, with no lock held.
func (s *latencySum) stats() LatencyStats {
	st := s.st
	st.Responses = s.all.Total()
	q := s.all.Quantiles(0.5, 0.95, 0.99)
	st.P50, st.P95, st.P99 = q[0], q[1], q[2]
	st.RPS = float64(s.recent) / rateSeconds
	if st.LastCount > 0 {
		st.LastMean = s.lastSum / time.Duration(st.LastCount)
	}
	return st
}
