package supervisor

import "sync"

// group is the goroutines an instance runs in the background: the signal
// watchers, the proxy's Serve, the replicas' slots and what they start
// (scale-down hand-overs, reloads on SIGHUP...). Every one is
// started through Go, and Run waits for all of them (Wait) before it
// returns, so that nothing of an instance outlives its Run.
type group struct {
	mu     sync.Mutex // guards closed, and orders Go's Add before Wait
	closed bool       // Wait has begun: Go starts nothing more
	wg     sync.WaitGroup
}

// Go runs f in a goroutine of the group and reports whether it did: once
// Wait has begun it starts nothing, as whatever asks then comes after the
// instance has stopped.
func (g *group) Go(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Go(f)
	return true
}

// Wait waits until every goroutine of the group has returned, those they
// start included.
func (g *group) Wait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
