package balancer

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Client connections that close leave their memory free in Go's heap but
// still resident. The runtime gives free memory back to the OS in the
// background only above a target set by the heap goal, which the
// connections' own heap had raised, so after 10,000 idle connections
// closed the process kept the 215 MiB they had added; and net/http puts each
// connection's two 4 KiB buffers back in a sync.Pool, which holds them
// until the second GC after, which a quiet proxy may not run for minutes.
// So once the open connections have fallen a lot from their peak and
// stopped falling, the balancer runs a GC, which moves the pools' buffers
// aside, and then debug.FreeOSMemory, a second GC that frees them and
// returns every free page at once. Both take the pause of a GC over what
// is still in use, and the returned pages cost a page fault each when
// used again, so it happens at most once per releaseEvery.

const (
	// releaseCheckEvery is how often the open connections are counted.
	releaseCheckEvery = 5 * time.Second
	// releaseMinDrop is the least fall from the peak that releases: about
	// 16 MiB of memory at what an idle connection costs.
	releaseMinDrop = 1000
	// releaseEvery is the least time between two releases.
	releaseEvery = time.Minute
)

// releaser decides when to return memory to the OS: when the connections
// open have fallen by releaseMinDrop or more, to half their peak or
// fewer, and did not fall further since the last check; and the last
// release was releaseEvery ago or more. The peak is counted again from
// each release.
type releaser struct {
	peak int64     // the most connections open since the last release
	prev int64     // the connections open at the last check
	last time.Time // the last release; zero: none yet
}

// check is told the connections open at now and reports whether to
// release now.
func (r *releaser) check(open int64, now time.Time) bool {
	falling := open < r.prev
	r.prev = open
	r.peak = max(r.peak, open)
	if falling || r.peak-open < releaseMinDrop || 2*open > r.peak {
		return false
	}
	if !r.last.IsZero() && now.Sub(r.last) < releaseEvery {
		return false
	}
	r.peak, r.last = open, now
	return true
}

// releaseMemory counts the open connections every releaseCheckEvery and
// returns memory to the OS when the releaser says, until stop is closed.
func (b *Balancer) releaseMemory(stop <-chan struct{}) {
	t := time.NewTicker(releaseCheckEvery)
	defer t.Stop()
	var r releaser
	for {
		select {
		case <-t.C:
		case <-stop:
			return
		}
		peak := r.peak
		if !r.check(b.conns.Load(), time.Now()) {
			continue
		}
		t0 := time.Now()
		runtime.GC()
		debug.FreeOSMemory()
		b.cfg().Logger.Debug("returned free memory to the OS after client connections closed",
			"conns", r.peak, "peak", peak, "took", time.Since(t0))
	}
}
