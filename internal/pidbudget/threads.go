package pidbudget

import (
	"runtime"
	"sync"
)

// HoldThreads makes the Go runtime start n OS threads now, beyond those it
// has busy, and keep them. Each of n goroutines locks a thread of its own
// and waits until all have, so n threads exist at once; then they unlock
// and end, and the threads go to the runtime's list of idle threads, which
// never shrinks. Later needs (a thread blocked in a write, every core busy
// at once) are met from that list: under a pids limit that replicas may
// fill, creating a thread then would fail, and a Go program that cannot
// create a thread it needs aborts.
func HoldThreads(n int) {
	var locked sync.WaitGroup
	release := make(chan struct{})
	var done sync.WaitGroup
	for range n {
		locked.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			locked.Done()
			<-release
			// Unlocked before the goroutine ends: a thread whose locked
			// goroutine ends is destroyed, not kept.
			runtime.UnlockOSThread()
		}()
	}
	locked.Wait()
	close(release)
	done.Wait()
}

// HeldThreads is how many threads mattingctl holds under a pids limit: one
// per GOMAXPROCS that its work may keep busy at once, and 8 more for the
// runtime's own (its monitor, its template thread), threads blocked in
// file writes and /proc reads, and the race detector's.
func HeldThreads() int { return runtime.GOMAXPROCS(0) + 8 }
