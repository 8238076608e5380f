package balancer

import (
	"runtime"
	"runtime/debug"
	"time"
)

// Memory the proxy no longer uses stays resident. The runtime gives free
// memory back to the OS in the background only above a target set by the
// heap goal, twice the heap in use at the last GC, so after 10,000 idle
// connections closed the process kept the 215 MiB they had added; what a
// burst of requests left as garbage stays too, until a GC the quiet proxy
// may not run for minutes, and even then; and net/http puts each closed
// connection's two 4 KiB buffers in a sync.Pool, which holds them until
// the second GC after. So when the proxy has that memory to give back, the
// balancer runs a GC, which moves the pools' buffers aside, and then
// debug.FreeOSMemory, a second GC that frees them and returns every free
// page at once, as the JVM's G1 does when it is idle (JEP 346). It does so
//
//   - when the open client connections have fallen by releaseMinDrop or
//     more, to half their peak or fewer, and stopped falling; or
//   - when no request has arrived for releaseQuiet, after
//     releaseMinRequests or more since the last release.
//
// Each takes the pause of a GC over what is still in use, and each page
// returned costs a page fault when it is used again, so it happens at most
// once per releaseEvery.

const (
	// releaseCheckEvery is how often the open connections and the
	// requests that arrived are counted.
	releaseCheckEvery = 5 * time.Second
	// releaseMinDrop is the least fall from the peak of open connections
	// that releases: about 16 MiB of memory at what an idle connection
	// costs.
	releaseMinDrop = 1000
	// releaseQuiet is how long without a request arrives before a quiet
	// proxy releases: longer than upstreamIdleTimeout, so that the idle
	// connections to the backends, and their buffers, have closed too.
	releaseQuiet = upstreamIdleTimeout + 5*time.Second
	// releaseMinRequests is how many requests must have arrived since the
	// last release for a quiet proxy to release: the garbage of fewer is
	// not worth a GC.
	releaseMinRequests = 1000
	// releaseEvery is the least time between two releases.
	releaseEvery = 30 * time.Second
)

// releaser decides when the proxy returns memory to the OS (see above).
// Its check is called every releaseCheckEvery.
type releaser struct {
	peak int64     // the most connections open since the last release
	prev int64     // the connections open at the last check
	last time.Time // the last release; zero: none yet

	arrived   uint64    // requests arrived, at the last check
	arrivedAt time.Time // the first check that saw arrived
	base      uint64    // requests arrived, at the last release
}

// check is told the connections open and the requests arrived (a
// counter) at now, and returns why to release now, or "" not to.
func (r *releaser) check(open int64, arrived uint64, now time.Time) string {
	falling := open < r.prev
	r.prev = open
	r.peak = max(r.peak, open)
	if arrived != r.arrived || r.arrivedAt.IsZero() {
		r.arrived, r.arrivedAt = arrived, now
	}
	why := ""
	switch {
	case !falling && r.peak-open >= releaseMinDrop && 2*open <= r.peak:
		why = "client connections closed"
	case now.Sub(r.arrivedAt) >= releaseQuiet && arrived-r.base >= releaseMinRequests:
		why = "no request for a while"
	default:
		return ""
	}
	if !r.last.IsZero() && now.Sub(r.last) < releaseEvery {
		return ""
	}
	r.peak, r.last, r.base = open, now, arrived
	return why
}

// releaseMemory counts the open connections and the requests arrived
// every releaseCheckEvery, and returns memory to the OS when the releaser
// says, until stop is closed.
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
		open := b.conns.Load()
		peak := max(r.peak, open)
		why := r.check(open, b.arrivedAll(), time.Now())
		if why == "" {
			continue
		}
		t0 := time.Now()
		runtime.GC()
		debug.FreeOSMemory()
		b.cfg().Logger.Debug("returned free memory to the OS", "why", why,
			"conns", open, "peak", peak, "took", time.Since(t0))
	}
}
