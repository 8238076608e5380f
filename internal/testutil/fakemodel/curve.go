package main

import (
	"context"
	"sync"
	"time"
)

// curve is a model server's capacity curve (-curve K): it works on K
// requests at once at full speed, as K cores or a GPU's best batch do.
// More in flight share K times the speed among them (processor sharing),
// and past K each further K costs everyone thrash more again (cache and
// memory contention, a batch past its sweet spot), so that throughput is
// highest from K in flight to K, and falls past it:
//
//	speed of each of n requests = min(1, K/n) / (1 + thrash·max(0, n-K)/K)
//
// A request needs its service time of work at full speed. One timer,
// set for the next request to finish, drives them all; nothing polls.
type curve struct {
	k, thrash float64

	mu    sync.Mutex // guards jobs, last and the timer's setting
	jobs  map[*job]struct{}
	last  time.Time // when the work left was last brought up to date
	timer *time.Timer
}

// job is one request's work left, in seconds at full speed.
type job struct {
	left float64
	done chan struct{} // closed when left reaches 0
}

func newCurve(k int, thrash float64) *curve {
	c := &curve{k: float64(k), thrash: thrash, jobs: map[*job]struct{}{}, last: time.Now()}
	c.timer = time.AfterFunc(time.Hour, c.tick)
	c.timer.Stop()
	return c
}

// speed is each request's speed with n in flight.
func (c *curve) speed(n int) float64 {
	f := float64(n)
	return min(1, c.k/max(f, 1)) / (1 + c.thrash*max(0, f-c.k)/c.k)
}

// serve does work at the speed the requests in flight allow, returning
// when it is done or ctx ends (the client went away: its share goes to
// the others).
func (c *curve) serve(ctx context.Context, work time.Duration) {
	j := &job{left: work.Seconds(), done: make(chan struct{})}
	c.mu.Lock()
	c.advanceLocked(time.Now())
	c.jobs[j] = struct{}{}
	c.scheduleLocked()
	c.mu.Unlock()
	select {
	case <-j.done:
	case <-ctx.Done():
		c.mu.Lock()
		c.advanceLocked(time.Now())
		delete(c.jobs, j)
		c.scheduleLocked()
		c.mu.Unlock()
	}
}

func (c *curve) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked(time.Now())
	c.scheduleLocked()
}

// advanceLocked does the work of the time since last, and finishes the
// jobs whose work is done. The caller holds c.mu.
func (c *curve) advanceLocked(now time.Time) {
	dt := now.Sub(c.last).Seconds()
	c.last = now
	if dt <= 0 || len(c.jobs) == 0 {
		return
	}
	done := dt * c.speed(len(c.jobs))
	for j := range c.jobs {
		// Within 50 µs of done is done: the timer fires no closer.
		if j.left -= done; j.left <= 50e-6 {
			close(j.done)
			delete(c.jobs, j)
		}
	}
}

// scheduleLocked sets the timer for when the job with the least work left
// finishes at the present speed. The caller holds c.mu.
func (c *curve) scheduleLocked() {
	if len(c.jobs) == 0 {
		c.timer.Stop()
		return
	}
	least := -1.0
	for j := range c.jobs {
		if least < 0 || j.left < least {
			least = j.left
		}
	}
	c.timer.Reset(time.Duration(least / c.speed(len(c.jobs)) * float64(time.Second)))
}
