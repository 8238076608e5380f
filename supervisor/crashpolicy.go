package supervisor

import "time"

// Crash backoff: a crashed replica is restarted after 0.5s, then 1s, 2s,
// 4s and 8s for each further crash in a row (at most 30s). A replica that
// stayed up for ResetAfter (10s) before crashing starts the series afresh:
// only a process that dies within seconds, time after time, is in a crash
// loop (a model that loads for minutes never is).
// Past MaxRestarts restarts in a row, a replica whose last process never
// became ready is marked failed (not retried; the others keep serving);
// one whose last process served is restarted after the longest delay.
const (
	DefaultBackoffInitial    = 500 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffResetAfter = 10 * time.Second
	DefaultMaxRestarts       = 5
)

// CrashBackoff decides how long to wait before restarting a crashed
// replica, and when to give up on it. The zero value uses the defaults
// above. (A rolling restart is another thing: see RollingRestart.)
type CrashBackoff struct {
	Initial     time.Duration
	Max         time.Duration
	ResetAfter  time.Duration
	MaxRestarts int

	crashes int // crashes in a row, each after less than ResetAfter up
}

// Crash records a crash after uptime and returns the delay before the next
// start, or ok=false when the replica has crashed too often to retry.
func (b *CrashBackoff) Crash(uptime time.Duration) (delay time.Duration, ok bool) {
	reset, maxRestarts := b.ResetAfter, b.MaxRestarts
	if reset <= 0 {
		reset = DefaultBackoffResetAfter
	}
	if maxRestarts <= 0 {
		maxRestarts = DefaultMaxRestarts
	}
	if uptime >= reset {
		b.crashes = 0
	}
	b.crashes++
	if b.crashes > maxRestarts {
		return 0, false
	}
	return b.delay(b.crashes), true
}

// delay returns the wait before the n-th restart in a row (n >= 1).
func (b *CrashBackoff) delay(n int) time.Duration {
	initial, maxDelay := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if maxDelay <= 0 {
		maxDelay = DefaultBackoffMax
	}
	d := initial
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// longest returns the longest delay between restarts.
func (b *CrashBackoff) longest() time.Duration {
	if b.Max <= 0 {
		return DefaultBackoffMax
	}
	return b.Max
}
