package balancer

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"net/http"
	"slices"
	"time"
)

// Why a request got no backend.
var (
	errNoBackend     = errors.New("no ready replica: all replicas are starting, restarting or stopped")
	errQueueFull     = errors.New("all replicas are busy and the queue is full")
	errQueueTimeout  = errors.New("all replicas stayed busy for the whole queue timeout")
	errPredictedWait = errors.New("all replicas are busy and the predicted wait in the queue is longer than the queue timeout")
)

// waiter is a request queued for a backend.
type waiter struct {
	r *http.Request
	// ready receives the attempt on the backend chosen for it, once; nil
	// when it was taken out of the queue because its wait became hopeless
	// (shedLocked).
	ready    chan *attempt
	elem     *list.Element // its place in the queue; nil once dispatched or shed
	deadline time.Time     // the end of its queue timeout; zero: none
	since    time.Time     // when it joined the queue, for Load's QueueWait
}

// acquire chooses a backend for r and returns the attempt on it, counted
// in flight there.
// When every backend is at its cap, r waits in the FIFO queue (at the
// front when retry is set: it has waited once already) until a backend has
// room, deadline passes or ctx ends. It fails at once when no backend is
// in rotation, the queue is full, deadline has passed, or the predicted
// wait for its place in the queue ends after deadline (a zero deadline is
// no limit). A retry avoids the backend avoid when another has room.
func (b *Balancer) acquire(ctx context.Context, r *http.Request, deadline time.Time, retry bool, avoid *Backend) (*attempt, error) {
	now := time.Now() // outside the lock: the in-flight lists' order may be off by the wait for it
	if !retry {
		b.arrived.Add(1)
	}
	b.mu.Lock()
	if len(b.pool) == 0 {
		b.mu.Unlock()
		return nil, errNoBackend
	}
	// Requests already waiting go first: FIFO.
	if b.queue.Len() == 0 || retry {
		if be := b.pickLocked(r, avoid); be != nil {
			a := &attempt{b: b, be: be, start: now}
			be.startLocked(a)
			b.mu.Unlock()
			return a, nil
		}
	}
	if b.queue.Len() >= b.cfg().Queue {
		b.mu.Unlock()
		return nil, errQueueFull
	}
	place := b.queue.Len() + 1
	if retry {
		place = 1
	}
	if err := b.admitLocked(place, deadline, now); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	w := &waiter{r: r, ready: make(chan *attempt, 1), deadline: deadline, since: now}
	if retry {
		w.elem = b.queue.PushFront(w)
	} else {
		w.elem = b.queue.PushBack(w)
	}
	b.queued.Store(int64(b.queue.Len()))
	b.armColdShedLocked()
	b.mu.Unlock()

	var timeout <-chan time.Time // nil, never ready: no limit
	if !deadline.IsZero() {
		t := time.NewTimer(deadline.Sub(now))
		defer t.Stop()
		timeout = t.C
	}
	var err error
	select {
	case a := <-w.ready:
		if a == nil {
			return nil, errPredictedWait
		}
		return a, nil
	case <-timeout:
		err = errQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	if w.elem != nil {
		b.queue.Remove(w.elem)
		b.queued.Store(int64(b.queue.Len()))
		b.mu.Unlock()
		return nil, err
	}
	b.mu.Unlock()
	// Dispatched (or shed) just as it gave up: a timed-out request takes
	// its turn, a departed client gives it back.
	a := <-w.ready
	if a == nil {
		return nil, cmp.Or(ctx.Err(), errPredictedWait)
	}
	if ctx.Err() != nil {
		b.release(a, 0)
		return nil, ctx.Err()
	}
	return a, nil
}

// pickLocked asks the policy to choose among the backends in rotation that
// have room, other than avoid unless it is the only one. The caller holds
// b.mu.
func (b *Balancer) pickLocked(r *http.Request, avoid *Backend) *Backend {
	room := b.scratch[:0]
	for _, be := range b.pool {
		if b.roomLocked(be) {
			room = append(room, be)
		}
	}
	if avoid != nil && len(room) > 1 {
		room = slices.DeleteFunc(room, func(be *Backend) bool { return be == avoid })
	}
	b.scratch = room[:0]
	if len(room) == 0 {
		return nil
	}
	return b.cfg().Policy.Select(room, r)
}

// dispatchLocked hands backends with room to the requests at the head of
// the queue. The caller holds b.mu.
func (b *Balancer) dispatchLocked() {
	var now time.Time
	for b.queue.Len() > 0 {
		front := b.queue.Front()
		w := front.Value.(*waiter)
		be := b.pickLocked(w.r, nil)
		if be == nil {
			break
		}
		if now.IsZero() {
			now = time.Now()
		}
		a := &attempt{b: b, be: be, start: now}
		be.startLocked(a)
		b.queue.Remove(front)
		w.elem = nil
		w.ready <- a
	}
	b.queued.Store(int64(b.queue.Len()))
}

// release ends attempt a, which took d (zero: not to be measured), and
// gives its backend's room to the next queued request.
func (b *Balancer) release(a *attempt, d time.Duration) {
	be := a.be
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	be.endLocked(a)
	b.completed.Add(1)
	b.endLimitLocked(a, now)
	if d > 0 {
		be.observe(d, now)
		b.serviceTime.observe(d)
	}
	be.inflight.Add(-1)
	be.closeIdleLocked()
	b.dispatchLocked()
	b.shedLocked()
}

// ewmaPlainSamples is how many service times are averaged plainly before
// the exponentially weighted mean takes over.
const ewmaPlainSamples = 20

// ewma is an exponentially weighted mean of service times, in seconds.
type ewma struct {
	mean float64
	n    int
}

func (e *ewma) observe(d time.Duration) {
	const alpha = 0.05
	s := d.Seconds()
	if e.n < ewmaPlainSamples { // a plain mean until there are enough samples
		e.n++
		e.mean += (s - e.mean) / float64(e.n)
		return
	}
	e.mean += alpha * (s - e.mean)
}
