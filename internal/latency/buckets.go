// Package latency counts response times on a log-linear scale, in fixed
// memory, fine enough that a quantile read from the counts is within
// about 3% of the true one, and keeps the last minute of them.
//
// The scale is HDR Histogram's: each octave of microseconds is split into
// Sub equal buckets, so that from 32 µs up a bucket is at most 1/32 of
// its lower bound wide; below that every microsecond has its own.
// Recording a time is a bit length, a shift and an increment.
package latency

import (
	"math"
	"math/bits"
	"time"
)

const (
	subBits = 5
	// Sub is the number of buckets to an octave.
	Sub = 1 << subBits
	// topBits bounds the times counted: up to 2^32 µs, about 71 minutes;
	// slower ones count in the last bucket.
	topBits = 32
	// Buckets is the number of buckets: times below 2*Sub µs have one
	// each, every octave above them Sub.
	Buckets = (topBits - subBits + 1) * Sub
)

// Counts holds a number of responses per bucket.
type Counts [Buckets]uint64

// Bucket returns the bucket of a response time d, 0 to Buckets-1.
func Bucket(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	n := bits.Len64(us)
	if n <= subBits+1 { // below 2*Sub µs: a bucket a microsecond
		return int(us)
	}
	if n > topBits {
		return Buckets - 1
	}
	shift := n - subBits - 1 // us>>shift is in [Sub, 2*Sub)
	return shift*Sub + int(us>>shift)
}

// Lower returns the start of bucket i: the fastest time it counts.
func Lower(i int) time.Duration {
	m, shift := split(i)
	return time.Duration(m<<shift) * time.Microsecond
}

// Upper returns the end of bucket i: it counts times below it.
func Upper(i int) time.Duration {
	m, shift := split(i)
	return time.Duration((m+1)<<shift) * time.Microsecond
}

// split returns bucket i as a mantissa and a shift: it counts times from
// m<<shift µs up to (m+1)<<shift µs.
func split(i int) (m uint64, shift int) {
	if i < 2*Sub {
		return uint64(max(i, 0)), 0
	}
	shift = i/Sub - 1
	return uint64(i - shift*Sub), shift
}

// Total returns the number of responses counted.
func (c *Counts) Total() uint64 {
	var t uint64
	for _, n := range c {
		t += n
	}
	return t
}

// Quantile returns quantile q (0.5 for the median) of the times counted,
// and false when there are none. It finds the bucket that holds the
// response of rank q*total and interpolates linearly within it, so the
// estimate lies in the same bucket as the true value: from 32 µs up it is
// off by at most a bucket's width, 1/32 of the value.
func (c *Counts) Quantile(q float64) (time.Duration, bool) {
	return c.quantile(q, c.Total())
}

func (c *Counts) quantile(q float64, total uint64) (time.Duration, bool) {
	i, f, ok := c.locate(q, total)
	if !ok {
		return 0, false
	}
	lo, hi := Lower(i), Upper(i)
	return lo + time.Duration(math.Round(f*float64(hi-lo))), true
}

// UpperQuantile returns the end of the bucket that holds quantile q of
// the times counted, and false when there are none: never below the true
// value, and from 32 µs up at most 1/32 above it.
func (c *Counts) UpperQuantile(q float64) (time.Duration, bool) {
	i, _, ok := c.locate(q, c.Total())
	if !ok {
		return 0, false
	}
	return Upper(i), true
}

// locate returns the bucket that holds the response of rank q*total, and
// how far into the bucket's count that rank is, from 0 to 1.
func (c *Counts) locate(q float64, total uint64) (i int, f float64, ok bool) {
	if total == 0 {
		return 0, 0, false
	}
	rank := min(max(q, 0), 1) * float64(total)
	var seen uint64
	last := 0
	for i, n := range c {
		if n == 0 {
			continue
		}
		if float64(seen+n) >= rank {
			return i, (rank - float64(seen)) / float64(n), true
		}
		seen += n
		last = i
	}
	return last, 1, true // rounding: rank past the last response
}

// Quantiles returns the quantiles qs of the times counted, all 0 when
// there are none, adding the counts up once.
func (c *Counts) Quantiles(qs ...float64) []time.Duration {
	total := c.Total()
	out := make([]time.Duration, len(qs))
	for i, q := range qs {
		out[i], _ = c.quantile(q, total)
	}
	return out
}
