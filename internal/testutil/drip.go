package testutil

import (
	"io"
	"sync"
	"time"
)

// Drip is a request body that sends a byte at once and then one every
// Every, until closed: a slow upload.
type Drip struct {
	every  time.Duration
	sent   bool
	closed chan struct{}
	once   sync.Once
}

// NewDrip returns a Drip that sends a byte every every.
func NewDrip(every time.Duration) *Drip { return &Drip{every: every, closed: make(chan struct{})} }

// Read gives one byte, at once the first time and every d.every after;
// once d is closed, io.EOF.
func (d *Drip) Read(p []byte) (int, error) {
	if d.sent {
		t := time.NewTimer(d.every)
		defer t.Stop()
		select {
		case <-d.closed:
			return 0, io.EOF
		case <-t.C:
		}
	}
	d.sent = true
	p[0] = 'x'
	return 1, nil
}

// Close ends the body: a Read waiting for its next byte returns io.EOF.
// It may be called more than once.
func (d *Drip) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}
