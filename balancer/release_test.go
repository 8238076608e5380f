package balancer

import (
	"testing"
	"time"
)

// TestReleaserChecks: memory is returned once the open connections have
// fallen by at least releaseMinDrop, to half their peak or fewer, and
// stopped falling; at most once per releaseEvery.
func TestReleaserChecks(t *testing.T) {
	type step struct {
		at   time.Duration // since the first check
		open int64
		want bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"rising never", []step{{0, 0, false}, {5 * time.Second, 5000, false}, {10 * time.Second, 10000, false}, {15 * time.Second, 10000, false}}},
		{"all closed, once the fall stops", []step{{0, 10000, false}, {5 * time.Second, 0, false}, {10 * time.Second, 0, true}, {15 * time.Second, 0, false}}},
		{"a slow fall, at its end", []step{
			{0, 10000, false}, {5 * time.Second, 8000, false}, {10 * time.Second, 6000, false},
			{15 * time.Second, 4000, false}, {20 * time.Second, 2000, false}, {25 * time.Second, 2100, true},
		}},
		{"fewer than releaseMinDrop", []step{{0, releaseMinDrop - 1, false}, {5 * time.Second, 0, false}, {10 * time.Second, 0, false}}},
		{"not to half the peak", []step{{0, 10000, false}, {5 * time.Second, 5001, false}, {10 * time.Second, 5001, false}}},
		{"half the peak", []step{{0, 10000, false}, {5 * time.Second, 5000, false}, {10 * time.Second, 5000, true}}},
		{"again only releaseEvery later, from a new peak", []step{
			{0, 4000, false}, {5 * time.Second, 0, false}, {10 * time.Second, 0, true},
			{15 * time.Second, 3000, false}, {20 * time.Second, 0, false}, {25 * time.Second, 0, false},
			{10*time.Second + releaseEvery - time.Nanosecond, 0, false}, {10*time.Second + releaseEvery, 0, true},
			{20*time.Second + releaseEvery, 0, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r releaser
			start := time.Now()
			for i, s := range tt.steps {
				if got := r.check(s.open, start.Add(s.at)); got != s.want {
					t.Errorf("step %d (%s, %d open): check = %v, want %v", i, s.at, s.open, got, s.want)
				}
			}
		})
	}
}
