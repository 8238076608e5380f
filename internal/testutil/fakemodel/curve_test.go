package main

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestCurveSpeed: full speed up to K, K shared past it, and a quarter
// more lost per K past K.
func TestCurveSpeed(t *testing.T) {
	c := newCurve(4, 0.25)
	for _, tt := range []struct {
		n    int
		want float64
	}{{0, 1}, {1, 1}, {4, 1}, {8, 0.5 / 1.25}, {16, 0.25 / 1.75}} {
		if got := c.speed(tt.n); got < tt.want-1e-9 || got > tt.want+1e-9 {
			t.Errorf("speed(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

// TestCurveServes: with K = 2, two requests together take their service
// time, four together take 2 × 1.25 times it; a request whose client
// went away returns at once and leaves its share to the others.
func TestCurveServes(t *testing.T) {
	const work = 100 * time.Millisecond
	together := func(c *curve, n int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { c.serve(context.Background(), work) })
		}
		wg.Wait()
		return time.Since(start)
	}
	c := newCurve(2, 0.25)
	if d := together(c, 2); d < work || d > work+80*time.Millisecond {
		t.Errorf("2 requests on K = 2 took %v, want about %v", d, work)
	}
	if d := together(c, 4); d < 250*time.Millisecond || d > 350*time.Millisecond {
		t.Errorf("4 requests on K = 2 took %v, want about 250ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan struct{})
	go func() { c.serve(ctx, time.Hour); close(gone) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case <-gone:
	case <-time.After(time.Second):
		t.Fatal("a request whose client went away was still served a second later")
	}
	c.mu.Lock()
	n := len(c.jobs)
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("%d jobs left after every request ended", n)
	}
}
