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

// A latency histogram: log-scale buckets of response times, two to an
// octave (a bucket's upper bound is at most 1.5 times its lower one, so a
// quantile is overestimated by at most half), in histWindows windows of
// histWindow each, the current one last: a quantile from it covers the
// last 50 to 60 seconds and forgets a replica's slow past as peak-EWMA
// does. Beside it, responses and their total time per second over the
// last rateSlots seconds, for rates. A response costs two index
// computations and four increments, under the lock release holds anyway,
// and no allocation.
const (
	histBuckets   = 64 // up to 2^32 µs, about 71 minutes; slower counts as that
	histWindow    = 10 * time.Second
	histWindows   = 6
	rateSlots     = 16 // a power of two, more than rateSeconds
	rateSeconds   = 10 // Latency's RPS is over this many whole seconds
	minP99Samples = 20
)

// histBase anchors the window and second numbers of latencyHist; an hour
// before clockBase, so that they are positive for any time a test makes.
var histBase = clockBase.Add(-time.Hour)

type latencyHist struct {
	win   [histWindows][histBuckets]uint32
	epoch int64 // the window number (time since histBase / histWindow) of the current one
	// count and sum are per second: slot second%rateSlots holds second.
	count  [rateSlots]uint32
	sum    [rateSlots]time.Duration
	second int64 // the latest second counted
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

// rotate moves the per-second slots and the windows on to now, clearing
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
	if e := sec / int64(histWindow/time.Second); e > h.epoch {
		for n := h.epoch + 1; n <= e && n <= h.epoch+histWindows; n++ {
			h.win[n%histWindows] = [histBuckets]uint32{}
		}
		h.epoch = e
	}
}

func (h *latencyHist) observe(d time.Duration, now time.Time) {
	h.rotate(now)
	w := &h.win[h.epoch%histWindows]
	if i := bucketOf(d); w[i] < ^uint32(0) {
		w[i]++
	}
	h.count[h.second%rateSlots]++
	h.sum[h.second%rateSlots] += d
}

// addTo adds the windows' counts into into.
func (h *latencyHist) addTo(into *[histBuckets]uint64) {
	for w := range h.win {
		for i, n := range h.win[w] {
			into[i] += uint64(n)
		}
	}
}

// quantile returns the upper bound of the bucket holding quantile q of
// the responses in the windows.
func (h *latencyHist) quantile(q float64, now time.Time) (time.Duration, bool) {
	h.rotate(now)
	var all [histBuckets]uint64
	h.addTo(&all)
	return quantileOf(&all, q, minP99Samples)
}

// quantileOf returns the upper bound of the bucket holding quantile q of
// the counts, when they add up to at least least.
func quantileOf(counts *[histBuckets]uint64, q float64, least uint64) (time.Duration, bool) {
	var total uint64
	for _, n := range counts {
		total += n
	}
	if total < max(least, 1) {
		return 0, false
	}
	rank := uint64(q*float64(total) + 0.999999)
	var seen uint64
	for i, n := range counts {
		seen += n
		if seen >= rank {
			return bucketUpper(i), true
		}
	}
	return bucketUpper(histBuckets - 1), true
}
