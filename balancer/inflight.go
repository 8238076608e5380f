package balancer

import (
	"time"

	"github.com/mattingctl/mattingctl/internal/latency"
)

// Each backend keeps its attempts in flight in a doubly linked list, in the
// order they started, so that the oldest is the head. Linking and unlinking
// happen under the balancer's mu, which acquire and release hold anyway: a
// request costs two pointer updates and no extra lock. The head's start
// time is published in an atomic for lock-free reads by status.

// clockBase anchors the monotonic start times stored in Backend.oldest.
var clockBase = time.Now()

// startLocked counts a in flight on its backend. The caller holds b.mu.
func (be *Backend) startLocked(a *attempt) {
	be.startLimitLocked(a)
	be.inflight.Add(1)
	a.prev, a.next = be.tail, nil
	if be.tail != nil {
		be.tail.next = a
	} else {
		be.head = a
		be.oldest.Store(int64(a.start.Sub(clockBase)) + 1) // 0 means none
	}
	be.tail = a
}

// endLocked takes a off its backend's in-flight list. The caller holds b.mu.
func (be *Backend) endLocked(a *attempt) {
	if a.prev != nil {
		a.prev.next = a.next
	} else {
		be.head = a.next
		if be.head != nil {
			be.oldest.Store(int64(be.head.start.Sub(clockBase)) + 1)
		} else {
			be.oldest.Store(0)
		}
	}
	if a.next != nil {
		a.next.prev = a.prev
	} else {
		be.tail = a.prev
	}
	a.prev, a.next = nil, nil
}

// OldestInflight returns how long the backend's oldest request in flight
// has been so, or 0 when none is.
func (be *Backend) OldestInflight() time.Duration {
	v := be.oldest.Load()
	if v == 0 {
		return 0
	}
	return max(time.Since(clockBase)-time.Duration(v-1), 0)
}

// LatencyP99 estimates be's 99th percentile response time over the last
// 50 to 60 seconds. ok is false until that window holds minP99Samples
// responses.
func (b *Balancer) LatencyP99(be *Backend) (p99 time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return be.hist.quantile(0.99, time.Now())
}

// A latency histogram: response times on internal/latency's log-linear
// scale (32 buckets to an octave, so a quantile read from it is within
// about 3% of the true one), over the last 50 to 60 seconds, forgetting a
// replica's slow past as peak-EWMA does. Beside it, responses and their
// total time per second over the last rateSlots seconds, for rates. A
// response costs a bucket computation and four increments, under the
// lock release holds anyway, and no allocation.
const (
	rateSlots     = 16 // a power of two, more than rateSeconds
	rateSeconds   = 10 // Latency's RPS is over this many whole seconds
	minP99Samples = 20
)

// histBase anchors the second numbers of latencyHist; an hour before
// clockBase, so that they are positive for any time a test makes.
var histBase = clockBase.Add(-time.Hour)

type latencyHist struct {
	win latency.Window
	// count and sum are per second: slot second%rateSlots holds second.
	count  [rateSlots]uint32
	sum    [rateSlots]time.Duration
	second int64 // the latest second counted
}

// rotate moves the per-second slots and the window on to now, clearing
// those that fall out. Within a second it is one division and a compare.
func (h *latencyHist) rotate(now time.Time) {
	sec := int64(now.Sub(histBase) / time.Second)
	if sec <= h.second {
		return
	}
	for n := h.second + 1; n <= sec && n <= h.second+rateSlots; n++ {
		h.count[n%rateSlots], h.sum[n%rateSlots] = 0, 0
	}
	h.second = sec
	h.win.Rotate(now)
}

func (h *latencyHist) observe(d time.Duration, now time.Time) {
	h.rotate(now)
	h.win.Count(d)
	h.count[h.second%rateSlots]++
	h.sum[h.second%rateSlots] += d
}

// quantile returns quantile q of the responses of the last minute, once
// there are minP99Samples of them: the end of the bucket that holds it
// (at most 1/32 above the true value), so that a request is never taken
// for slow against an underestimate.
func (h *latencyHist) quantile(q float64, now time.Time) (time.Duration, bool) {
	h.rotate(now)
	var all latency.Counts
	h.win.AddTo(&all)
	if all.Total() < minP99Samples {
		return 0, false
	}
	return all.UpperQuantile(q)
}
