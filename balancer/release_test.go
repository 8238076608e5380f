package balancer

import (
	"testing"
	"time"
)

// TestReleaserChecks: memory is returned once the open connections have
// fallen by at least releaseMinDrop, to half their peak or fewer, and
// stopped falling; or once no request has arrived for releaseQuiet after
// releaseMinRequests or more; at most once per releaseEvery.
func TestReleaserChecks(t *testing.T) {
	const (
		closed = "client connections closed"
		quiet  = "no request for a while"
	)
	type step struct {
		at      time.Duration // since the first check
		open    int64
		arrived uint64
		want    string
	}
	s := time.Second
	tests := []struct {
		name  string
		steps []step
	}{
		{"rising never", []step{{0, 0, 0, ""}, {5 * s, 5000, 5000, ""}, {10 * s, 10000, 10000, ""}, {15 * s, 10000, 10000, ""}}},
		{"all closed, once the fall stops", []step{{0, 10000, 0, ""}, {5 * s, 0, 0, ""}, {10 * s, 0, 0, closed}, {15 * s, 0, 0, ""}}},
		{"a slow fall, at its end", []step{
			{0, 10000, 0, ""}, {5 * s, 8000, 0, ""}, {10 * s, 6000, 0, ""},
			{15 * s, 4000, 0, ""}, {20 * s, 2000, 0, ""}, {25 * s, 2100, 0, closed},
		}},
		{"fewer than releaseMinDrop", []step{{0, releaseMinDrop - 1, 0, ""}, {5 * s, 0, 0, ""}, {10 * s, 0, 0, ""}}},
		{"not to half the peak", []step{{0, 10000, 0, ""}, {5 * s, 5001, 0, ""}, {10 * s, 5001, 0, ""}}},
		{"half the peak", []step{{0, 10000, 0, ""}, {5 * s, 5000, 0, ""}, {10 * s, 5000, 0, closed}}},
		{"again only releaseEvery later, from a new peak", []step{
			{0, 4000, 0, ""}, {5 * s, 0, 0, ""}, {10 * s, 0, 0, closed},
			{15 * s, 3000, 0, ""}, {20 * s, 0, 0, ""}, {25 * s, 0, 0, ""},
			{10*s + releaseEvery - time.Nanosecond, 0, 0, ""}, {10*s + releaseEvery, 0, 0, closed},
			{20*s + releaseEvery, 0, 0, ""},
		}},
		{"quiet after enough requests", []step{
			{0, 100, 0, ""}, {5 * s, 100, releaseMinRequests, ""},
			{5*s + releaseQuiet - time.Nanosecond, 100, releaseMinRequests, ""},
			{5*s + releaseQuiet, 100, releaseMinRequests, quiet},
			{10*s + releaseQuiet + releaseEvery, 100, releaseMinRequests, ""}, // none since
		}},
		{"quiet after too few requests", []step{
			{0, 100, 0, ""}, {5 * s, 100, releaseMinRequests - 1, ""}, {5*s + 2*releaseQuiet, 100, releaseMinRequests - 1, ""},
		}},
		{"never quiet", []step{
			{0, 100, 0, ""}, {releaseQuiet / 2, 100, releaseMinRequests, ""},
			{releaseQuiet, 100, releaseMinRequests + 1, ""}, {3 * releaseQuiet / 2, 100, releaseMinRequests + 2, ""},
			{2 * releaseQuiet, 100, releaseMinRequests + 3, ""},
		}},
		{"quiet counts requests from the last release", []step{
			{0, 2000, 0, ""}, {5 * s, 0, 500, ""}, {10 * s, 0, 500, closed},
			{15 * s, 0, 1400, ""}, {15*s + releaseQuiet, 0, 1400, ""}, // 900 since
			{20*s + releaseQuiet, 0, 1500, ""}, {20*s + 2*releaseQuiet, 0, 1500, quiet},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r releaser
			start := time.Now()
			for i, st := range tt.steps {
				if got := r.check(st.open, st.arrived, start.Add(st.at)); got != st.want {
					t.Errorf("step %d (%s, %d open, %d arrived): check = %q, want %q", i, st.at, st.open, st.arrived, got, st.want)
				}
			}
		})
	}
}
