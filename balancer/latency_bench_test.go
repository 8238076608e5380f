package balancer

import (
	"testing"
	"time"
)

// benchLatencies are response times spread over three decades, so that
// the record path's bucket arithmetic sees many octaves.
var benchLatencies = func() [64]time.Duration {
	var ds [64]time.Duration
	for i := range ds {
		ds[i] = time.Duration(1+i*i*37) * 50 * time.Microsecond
	}
	return ds
}()

// BenchmarkLatencyObserve is the cost the response-time histogram adds to
// each response, under the lock release holds anyway.
func BenchmarkLatencyObserve(b *testing.B) {
	var h latencyHist
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.observe(benchLatencies[i%len(benchLatencies)], now)
	}
}
