package balancer

import (
	"math"
	"time"
)

// Admission by predicted wait. A request that finds every backend at its
// cap would wait in the queue until enough requests ahead of it complete.
// The queue advances at the backends' completion rate, which by Little's
// law is the requests they hold at their cap (the backends in rotation
// times MaxInflight) over the mean time a request takes (an exponentially
// weighted mean of the recent responses, serviceTime). A request whose
// place in the queue over that rate ends after its queue timeout would
// only wait to be answered 503: it is answered 503 at once, with the
// prediction as Retry-After. A long wait that ends in time is served.
//
// With no response timed yet there is no prediction, and every request is
// admitted; once the first responses are timed, shedLocked takes out of
// the queue the requests at its tail that can no longer be served in time,
// so that a burst at a cold start fails within one service time too. A
// request that was admitted still leaves when its queue timeout passes or
// its client goes, whatever was predicted.
//
// The rate comes from service times rather than from counting completions
// over a window: a window counts the requests that arrived, not those the
// backends could have completed, so after a quiet spell it would predict
// long waits for a burst the backends clear in seconds, and reject it.

// predictLocked returns how long a request at place (1 is the front) in
// the queue is expected to wait. ok is false when there is no prediction:
// no response timed yet, or no cap to count the backends' capacity by.
// The caller holds b.mu.
func (b *Balancer) predictLocked(place int) (wait time.Duration, ok bool) {
	slots := len(b.pool) * b.opts.MaxInflight
	if b.serviceTime.n == 0 || slots <= 0 {
		return 0, false
	}
	secs := float64(place) / float64(slots) * b.serviceTime.mean
	return time.Duration(math.Min(secs, math.MaxInt64/2/float64(time.Second)) * float64(time.Second)), true
}

// admitLocked decides whether a request may wait at place in the queue,
// with deadline the end of its queue timeout (zero: none), at now. The
// caller holds b.mu.
func (b *Balancer) admitLocked(place int, deadline, now time.Time) error {
	if deadline.IsZero() {
		return nil
	}
	left := deadline.Sub(now)
	if left <= 0 {
		return errQueueTimeout
	}
	if wait, ok := b.predictLocked(place); ok && wait > left {
		return errPredictedWait
	}
	return nil
}

// shedLocked answers, at once, the requests at the tail of the queue whose
// predicted wait now ends after their queue timeout: the prediction became
// known (the first responses of a cold start) or longer (a replica left
// rotation) since they were admitted. It stops at the first request still
// hopeful, so that it costs one comparison when nothing changed. The
// caller holds b.mu.
func (b *Balancer) shedLocked() {
	if b.opts.QueueTimeout <= 0 || b.queue.Len() == 0 {
		return
	}
	now := time.Now()
	for place := b.queue.Len(); place > 0; place-- {
		e := b.queue.Back()
		w := e.Value.(*waiter)
		wait, ok := b.predictLocked(place)
		if !ok || w.deadline.IsZero() || !now.Add(wait).After(w.deadline) {
			break
		}
		b.queue.Remove(e)
		w.elem = nil
		w.ready <- nil
	}
	b.queued.Store(int64(b.queue.Len()))
}

// retryAfter estimates, in whole seconds from 1 to 3600, when a rejected
// client will find room: the predicted wait of a request joining the
// queue now, or 1 with no prediction. The caller holds no lock.
func (b *Balancer) retryAfter() int {
	b.mu.Lock()
	wait, _ := b.predictLocked(b.queue.Len() + 1)
	b.mu.Unlock()
	return int(math.Min(math.Max(math.Ceil(wait.Seconds()), 1), 3600))
}
