package matte

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWorkers(t *testing.T) {
	w := NewWorkers(2, 0)
	for range 2 {
		if err := w.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third Acquire of 2 slots: %v, want it to wait until its context ends", err)
	}
	w.Release()
	if err := w.Acquire(context.Background()); err != nil {
		t.Fatalf("Acquire after a Release: %v", err)
	}

	slow := NewWorkers(1, time.Hour)
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := slow.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with an hour's delay: %v, want the context's end", err)
	}
	if n := len(slow.slots); n != 0 {
		t.Fatalf("%d slots held after an Acquire gave up during its delay, want 0", n)
	}
}
