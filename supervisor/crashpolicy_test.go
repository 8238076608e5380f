package supervisor

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const s = time.Second
	type crash struct {
		uptime time.Duration
		delay  time.Duration
		ok     bool
	}
	tests := []struct {
		name    string
		b       CrashBackoff
		crashes []crash
	}{
		{"defaults double then fail", CrashBackoff{}, []crash{
			{0, 500 * time.Millisecond, true}, {s, s, true}, {s, 2 * s, true},
			{s, 4 * s, true}, {s, 8 * s, true}, {s, 0, false},
		}},
		{"long uptime resets the series", CrashBackoff{}, []crash{
			{0, 500 * time.Millisecond, true}, {s, s, true}, {2 * time.Minute, 500 * time.Millisecond, true},
		}},
		{"ten seconds up is long enough by default", CrashBackoff{}, []crash{
			{0, 500 * time.Millisecond, true}, {9 * s, s, true}, {10 * s, 500 * time.Millisecond, true},
		}},
		{"capped at Max", CrashBackoff{Initial: s, Max: 3 * s, MaxRestarts: 10}, []crash{
			{0, s, true}, {0, 2 * s, true}, {0, 3 * s, true}, {0, 3 * s, true},
		}},
		{"one restart allowed", CrashBackoff{MaxRestarts: 1}, []crash{
			{0, 500 * time.Millisecond, true}, {0, 0, false},
		}},
		{"reset after failure threshold", CrashBackoff{MaxRestarts: 1, ResetAfter: 10 * s}, []crash{
			{0, 500 * time.Millisecond, true}, {10 * s, 500 * time.Millisecond, true}, {0, 0, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			for i, c := range tt.crashes {
				delay, ok := b.Crash(c.uptime)
				if delay != c.delay || ok != c.ok {
					t.Fatalf("crash %d (uptime %v): got (%v, %v), want (%v, %v)", i+1, c.uptime, delay, ok, c.delay, c.ok)
				}
			}
		})
	}
}
