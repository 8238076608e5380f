package matte

import (
	"context"
	"time"
)

// Workers bounds how many images are matted at once, as a model server's
// worker pool does: the others wait, which bounds memory. Each matting
// may also hold its slot for an extra delay, to model a slower model.
type Workers struct {
	slots chan struct{}
	delay time.Duration
}

// NewWorkers returns a pool of n slots (at least 1), each held delay
// longer than the matting takes.
func NewWorkers(n int, delay time.Duration) *Workers {
	return &Workers{slots: make(chan struct{}, max(n, 1)), delay: delay}
}

// Acquire takes a slot and serves the extra delay in it. On success the
// caller must Release the slot; on ctx's end it holds none.
func (w *Workers) Acquire(ctx context.Context) error {
	select {
	case w.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if w.delay <= 0 {
		return nil
	}
	t := time.NewTimer(w.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		w.Release()
		return ctx.Err()
	}
}

// Release gives back a slot taken by Acquire.
func (w *Workers) Release() { <-w.slots }
