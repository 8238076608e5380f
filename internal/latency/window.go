package latency

import "time"

// The last minute is six windows of ten seconds, the current one last: a
// quantile over them covers the last 50 to 60 seconds, and forgets a
// slow past within a minute.
const (
	windowLen = 10 * time.Second
	windows   = 6
)

// base anchors the window numbers: an hour before the process started, so
// that they are positive for any time a test makes.
var base = time.Now().Add(-time.Hour)

// Window counts response times over the last 50 to 60 seconds. It keeps
// the windows' sum up to date as it counts, so that reading it is one
// pass over Buckets counts, however many windows there are; a window that
// falls out is taken off the sum when the next one begins. It is not safe
// for concurrent use: its owner serialises calls (the balancer counts
// under the lock it holds anyway). About 25 KB.
type Window struct {
	win   [windows][Buckets]uint32
	sum   [Buckets]uint32 // of win; a window counts far fewer than 2^32 responses
	epoch int64           // the number of the current window, from base
}

// Rotate moves the window on to now, forgetting the counts that fall out.
// Within a window it is a division and a compare.
func (w *Window) Rotate(now time.Time) {
	e := int64(now.Sub(base) / windowLen)
	if e <= w.epoch {
		return
	}
	if e-w.epoch >= windows {
		*w = Window{epoch: e}
		return
	}
	for n := w.epoch + 1; n <= e; n++ {
		old := &w.win[n%windows]
		for i, c := range old {
			w.sum[i] -= c
		}
		*old = [Buckets]uint32{}
	}
	w.epoch = e
}

// Count counts one response that took d in the current window; the
// caller has rotated the window to now.
func (w *Window) Count(d time.Duration) {
	i := Bucket(d)
	w.win[w.epoch%windows][i]++
	w.sum[i]++
}

// Observe counts one response that took d, at now.
func (w *Window) Observe(d time.Duration, now time.Time) {
	w.Rotate(now)
	w.Count(d)
}

// Add counts the responses of c at now.
func (w *Window) Add(c *Counts, now time.Time) {
	w.Rotate(now)
	cur := &w.win[w.epoch%windows]
	for i, n := range c {
		if n != 0 {
			cur[i] += uint32(n)
			w.sum[i] += uint32(n)
		}
	}
}

// AddTo adds the windows' counts into c; Rotate first to leave out those
// older than a minute.
func (w *Window) AddTo(c *Counts) {
	for i, n := range w.sum {
		c[i] += uint64(n)
	}
}
