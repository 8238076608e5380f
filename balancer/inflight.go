package balancer

import (
	"math/bits"
	"time"
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
// 30 to 60 seconds. ok is false until that window holds minP99Samples
// responses.
func (b *Balancer) LatencyP99(be *Backend) (p99 time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return be.hist.quantile(0.99, time.Now())
}

// A latency histogram: log-scale buckets of response times, two to an
// octave (a bucket's upper bound is at most 1.5 times its lower one, so a
// quantile is overestimated by at most half), over two windows of
// histWindow each: the current one and the one before. A p99 from it
// covers the last 30 to 60 seconds, forgets a replica's slow past as
// peak-EWMA does, and costs an index computation and an increment per
// response, with no allocation.
const (
	histBuckets   = 64 // up to 2^32 µs, about 71 minutes; slower counts as that
	histWindow    = 30 * time.Second
	minP99Samples = 20
)

type latencyHist struct {
	cur, prev [histBuckets]uint32
	since     time.Time // when cur began
}

// bucketOf returns the bucket of a response time d.
func bucketOf(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 1))
	n := bits.Len64(us) // us is in [2^(n-1), 2^n)
	i := 2 * (n - 1)
	if n >= 2 && us>>(n-2)&1 == 1 { // the upper half of the octave
		i++
	}
	return min(i, histBuckets-1)
}

// bucketUpper returns the end of bucket i: it counts response times below
// it, in whole microseconds.
func bucketUpper(i int) time.Duration {
	low := time.Duration(1) << (i / 2) * time.Microsecond
	if i%2 == 0 {
		return low + low/2
	}
	return 2 * low
}

// rotate starts a new window when the current one is over.
func (h *latencyHist) rotate(now time.Time) {
	switch age := now.Sub(h.since); {
	case age < histWindow:
	case age < 2*histWindow:
		h.prev, h.cur, h.since = h.cur, [histBuckets]uint32{}, now
	default: // both windows are over
		h.prev, h.cur, h.since = [histBuckets]uint32{}, [histBuckets]uint32{}, now
	}
}

func (h *latencyHist) observe(d time.Duration, now time.Time) {
	h.rotate(now)
	if i := bucketOf(d); h.cur[i] < ^uint32(0) {
		h.cur[i]++
	}
}

// quantile returns the upper bound of the bucket holding quantile q of
// the responses in both windows.
func (h *latencyHist) quantile(q float64, now time.Time) (time.Duration, bool) {
	h.rotate(now)
	var total uint64
	for i := range h.cur {
		total += uint64(h.cur[i]) + uint64(h.prev[i])
	}
	if total < minP99Samples {
		return 0, false
	}
	rank := uint64(q*float64(total) + 0.999999)
	var seen uint64
	for i := range h.cur {
		seen += uint64(h.cur[i]) + uint64(h.prev[i])
		if seen >= rank {
			return bucketUpper(i), true
		}
	}
	return bucketUpper(histBuckets - 1), true
}
