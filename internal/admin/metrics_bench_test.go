package admin

import (
	"testing"
	"time"
)

// BenchmarkMetricsObserve is what every finished request costs /metrics
// and the dashboard: a counter, the Prometheus histogram and the live
// counts, from several goroutines at once.
func BenchmarkMetricsObserve(b *testing.B) {
	m := NewMetrics(&fakeSource{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Observe("replica-1", 200, time.Duration(1+i%64*i%64*37)*50*time.Microsecond)
			i++
		}
	})
}
