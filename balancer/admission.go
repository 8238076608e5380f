package balancer

import (
	"math"
	"time"
)

// Admission by predicted wait. A request that finds every backend at its
// cap would wait in the queue until enough requests ahead of it complete.
// The queue advances at the backends' completion rate, which by Little's
// law is the requests they hold at their cap (the backends in rotation
// times MaxInflight, or the sum of their learned caps) over the mean time a request takes (an exponentially
// weighted mean of the recent responses, serviceTime). A request whose
// place in the queue over that rate ends after its queue timeout would
// only wait to be answered 503: it is answered 503 at once, with the
// prediction as Retry-After. A long wait that ends in time is served.
//
// Before the first response is timed (a cold start), the only measure of
// the service time is that the requests in flight have taken at least as
// long as the oldest of them so far: the prediction uses that, and grows
// as they go on. The requests in flight may all end at once, so a request
// at place p with s slots is sure to wait p/s - 1 more service times. While
// the queue is not empty and nothing has been timed, shedLocked runs every
// coldShedEvery to apply the growing bound; after that it runs at every
// response. So most of a burst at a cold start fails within that bound.
// The first responses of fresh replicas are slower than the rest, and a
// refusal is for good, so until the mean has settled (settling) the
// prediction counts on faster replicas than measured: requests near the
// boundary wait longer for their 503, until the estimate settles or their
// queue timeout passes, but none that fits is refused. A request that was
// admitted still leaves when its queue timeout passes or its client goes,
// whatever was predicted.
//
// The rate comes from service times rather than from counting completions
// over a window: a window counts the requests that arrived, not those the
// backends could have completed, so after a quiet spell it would predict
// long waits for a burst the backends clear in seconds, and reject it.

// predictLocked returns how long a request at place (1 is the front) in
// the queue is expected to wait. ok is false when there is no prediction:
// nothing timed and nothing in flight, or no cap to count the backends'
// capacity by.
// The caller holds b.mu.
func (b *Balancer) predictLocked(place int) (wait time.Duration, ok bool) {
	slots := b.slotsLocked()
	if slots <= 0 {
		return 0, false
	}
	rounds := float64(place) / float64(slots) // service times until its turn
	mean := b.serviceTime.mean
	if b.serviceTime.n == 0 {
		mean = b.oldestInflightLocked().Seconds()
		if mean <= 0 {
			return 0, false
		}
		// The requests in flight may all end now: only the rounds
		// after theirs are sure to take that long.
		rounds = max(rounds-1, 0)
	}
	// The first responses of fresh replicas are slower than the rest (new
	// connections, lazy initialisation): a mean of a few may overstate the
	// service time, and a request refused on it is refused for good. So
	// until the mean has settled, the prediction counts on replicas as
	// fast as twice, then 1+1/n times, what was timed.
	secs := rounds * mean / settling(b.serviceTime.n)
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
	if b.cfg().queueTimeout() <= 0 || b.queue.Len() == 0 {
		return
	}
	now := time.Now()
	for place := b.queue.Len(); place > 0; place-- {
		e := b.queue.Back()
		w := e.Value.(*waiter)
		wait, ok := b.predictLocked(place)
		// A request whose queue timeout has passed is its own timer's to
		// answer (a queue timeout, not a prediction).
		if !ok || w.deadline.IsZero() || !now.Before(w.deadline) || !now.Add(wait).After(w.deadline) {
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

// coldShedEvery is how often the queue is shed before the first response
// is timed, while the bound on the service time grows with the requests
// in flight.
const coldShedEvery = 2 * time.Millisecond

// oldestInflightLocked returns how long the oldest request in flight on a
// backend in rotation has been so, or 0. The caller holds b.mu.
func (b *Balancer) oldestInflightLocked() time.Duration {
	var oldest time.Duration
	for _, be := range b.pool {
		oldest = max(oldest, be.OldestInflight())
	}
	return oldest
}

// armColdShedLocked makes sure the queue is shed every coldShedEvery while
// requests wait and no response has been timed. The caller holds b.mu.
func (b *Balancer) armColdShedLocked() {
	if b.coldShed == nil && b.serviceTime.n == 0 && b.queue.Len() > 0 && b.cfg().queueTimeout() > 0 {
		b.coldShed = time.AfterFunc(coldShedEvery, b.shedCold)
	}
}

// shedCold is the cold-start shedding timer's run.
func (b *Balancer) shedCold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.coldShed = nil
	b.shedLocked()
	b.armColdShedLocked()
}

// settling is the margin given to a mean of n service times (n = 0: the
// bound from the requests in flight): 2, then 1+1/n, and none once the
// plain mean gives way to the moving average (ewma).
func settling(n int) float64 {
	switch {
	case n == 0:
		return 2
	case n < ewmaPlainSamples:
		return 1 + 1/float64(n)
	default:
		return 1
	}
}
