package latency

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Every time lands in a bucket that holds it, buckets tile the scale with
// no gap, and from 32 µs up none is wider than 1/32 of its start.
func TestBuckets(t *testing.T) {
	for i := range Buckets {
		lo, hi := Lower(i), Upper(i)
		if hi <= lo {
			t.Fatalf("bucket %d: [%s, %s)", i, lo, hi)
		}
		if i > 0 && Upper(i-1) != lo {
			t.Fatalf("bucket %d starts at %s, the one before ends at %s", i, lo, Upper(i-1))
		}
		if lo >= 32*time.Microsecond && float64(hi-lo) > float64(lo)/Sub {
			t.Fatalf("bucket %d: [%s, %s) is wider than 1/%d of its start", i, lo, hi, Sub)
		}
		if Bucket(lo) != i || Bucket(hi-time.Nanosecond) != i {
			t.Fatalf("bucket %d: [%s, %s), but its ends count in %d and %d", i, lo, hi, Bucket(lo), Bucket(hi-time.Nanosecond))
		}
	}
	if top := Upper(Buckets - 1); top < time.Hour {
		t.Errorf("the scale ends at %s, want past an hour", top)
	}
	for _, d := range []time.Duration{-time.Second, 0, 100 * time.Hour} {
		if i := Bucket(d); i < 0 || i >= Buckets {
			t.Errorf("%s: bucket %d", d, i)
		}
	}
	if i := Bucket(100 * time.Hour); i != Buckets-1 {
		t.Errorf("100h: bucket %d, want the last", i)
	}
}

// within fails the test unless got is within 5% of want.
func within(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if d := float64(got-want) / float64(want); d < -0.05 || d > 0.05 {
		t.Errorf("%s: %s, want %s within 5%% (off by %+.1f%%)", what, got, want, 100*d)
	}
}

func countsOf(ds ...time.Duration) *Counts {
	var c Counts
	for _, d := range ds {
		c[Bucket(d)]++
	}
	return &c
}

// exact returns quantile q of ds by nearest rank, as a sorted list gives it.
func exact(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}

func TestQuantileMix(t *testing.T) {
	// 97% at 50 ms, 3% at 500 ms: the median is the fast ones', the p99
	// the slow ones'.
	var ds []time.Duration
	for i := range 1000 {
		if i%100 < 3 {
			ds = append(ds, 500*time.Millisecond)
		} else {
			ds = append(ds, 50*time.Millisecond)
		}
	}
	c := countsOf(ds...)
	q := c.Quantiles(0.5, 0.95, 0.99)
	within(t, "p50", q[0], 50*time.Millisecond)
	within(t, "p95", q[1], 50*time.Millisecond)
	within(t, "p99", q[2], 500*time.Millisecond)
	if c.Total() != 1000 {
		t.Errorf("total %d, want 1000", c.Total())
	}
}

// Times spread evenly over two decades: every quantile is within 5% of
// the exact one, and they differ as the times do.
func TestQuantileUniform(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ds []time.Duration
	for range 20000 {
		ds = append(ds, 5*time.Millisecond+time.Duration(r.Int64N(int64(500*time.Millisecond))))
	}
	c := countsOf(ds...)
	prev := time.Duration(0)
	for _, q := range []float64{0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999} {
		got, ok := c.Quantile(q)
		if !ok {
			t.Fatalf("q%v: none", q)
		}
		within(t, "quantile", got, exact(ds, q))
		if got <= prev {
			t.Errorf("q%v = %s, not above the one before (%s)", q, got, prev)
		}
		prev = got
	}
}

// A single time, anywhere on the scale, is read back within 5% (within a
// microsecond below 32 µs) at every quantile.
func TestQuantileSingle(t *testing.T) {
	for _, d := range []time.Duration{40 * time.Microsecond, 999 * time.Microsecond, 50 * time.Millisecond,
		123456 * time.Microsecond, 6291 * time.Millisecond, 17 * time.Minute} {
		c := countsOf(d)
		for _, q := range []float64{0, 0.5, 0.99, 1} {
			got, ok := c.Quantile(q)
			if !ok {
				t.Fatalf("%s: none", d)
			}
			within(t, d.String(), got, d)
			up, _ := c.UpperQuantile(q)
			if up <= d || float64(up-d) > float64(d)/Sub {
				t.Errorf("%s: upper bound of q%v %s, want above it by at most 1/%d", d, q, up, Sub)
			}
		}
	}
	c := countsOf(7 * time.Microsecond)
	if got, _ := c.Quantile(0.5); got < 7*time.Microsecond || got > 8*time.Microsecond {
		t.Errorf("7µs read back as %s", got)
	}
}

func TestQuantileEmpty(t *testing.T) {
	var c Counts
	if d, ok := c.Quantile(0.5); ok || d != 0 {
		t.Errorf("an empty histogram's median: %s, %v", d, ok)
	}
	if q := c.Quantiles(0.5, 0.99); q[0] != 0 || q[1] != 0 {
		t.Errorf("an empty histogram's quantiles: %v", q)
	}
}

// The window forgets a response 60 seconds after the window it fell in
// began, keeps it for at least 50, and its sum always equals its windows'.
func TestWindow(t *testing.T) {
	var w Window
	t0 := base.Add(time.Hour) // the start of a window
	w.Observe(time.Second, t0)
	for s := 1; s < 50; s++ {
		w.Observe(50*time.Millisecond, t0.Add(time.Duration(s)*time.Second))
	}
	read := func(at time.Time) *Counts {
		w.Rotate(at)
		var c Counts
		w.AddTo(&c)
		return &c
	}
	c := read(t0.Add(59 * time.Second))
	if c.Total() != 50 {
		t.Fatalf("after 59s: %d responses, want 50", c.Total())
	}
	if p, _ := c.Quantile(1); p < time.Second {
		t.Errorf("after 59s the slow one is gone already: max %s", p)
	}
	c = read(t0.Add(60 * time.Second))
	if c.Total() != 40 {
		t.Errorf("after 60s: %d responses, want the 40 of seconds 10 to 49", c.Total())
	}
	if p, _ := c.Quantile(1); p > 60*time.Millisecond {
		t.Errorf("after 60s the slow one still counts: max %s", p)
	}
	var c2 Counts
	c2[Bucket(time.Millisecond)] = 7
	w.Add(&c2, t0.Add(61*time.Second))
	if c = read(t0.Add(61 * time.Second)); c.Total() != 47 {
		t.Errorf("after adding 7: %d, want 47", c.Total())
	}
	if c = read(t0.Add(10 * time.Minute)); c.Total() != 0 {
		t.Errorf("ten minutes on: %d responses, want none", c.Total())
	}
	w.Observe(time.Millisecond, t0.Add(10*time.Minute))
	if c = read(t0.Add(10 * time.Minute)); c.Total() != 1 {
		t.Errorf("after a reset and one more: %d, want 1", c.Total())
	}
}
