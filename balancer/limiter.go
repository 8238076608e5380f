package balancer

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// An adaptive limit (--max-inflight auto) learns, for one backend, how many
// requests it can work on at once before they queue inside it, from the
// response times of the requests it completes: a gradient controller, as
// Envoy's adaptive concurrency filter and Netflix's Gradient2 are, with
// the cut of TCP Vegas.
//
// A window gathers the response times of requests that started after the
// limit last changed, and the mean number in flight during each (c). Its
// median (rtt) is compared with the backend's latency without queueing
// (minRTT): their ratio r says how much of each response was spent
// waiting inside the backend, and c/r (Little's law: the requests in
// flight over r) is how many it was actually working on, its parallelism.
//
//   - r above 1+limitTolerance in two windows running: requests queue
//     inside the backend. The limit is cut to the parallelism measured
//     times limitHeadroom, never up and never below half: on a backend that
//     serves K at once and slows past K, one cut from slow start lands
//     near K. One window over is held, not acted on: a stall of the
//     machine (another process, a collection) slows every response in a
//     short window at once, and a cut on it would cost the backend's
//     throughput until the limit grew back.
//   - otherwise, if the limit held a request back during the window (a
//     policy found the backend full): the backend has room, and the limit
//     grows, doubling per window until the first cut (slow start), then by
//     limitGrowth of itself per window; but by limitCreep only when the
//     next cap would be the one at which queueing was last seen (the
//     knee), so that a backend serving one at a time is tried at two
//     rarely. A window at a cap past the knee with no queueing forgets it:
//     the backend has more room than it had.
//   - otherwise the load did not reach the limit, and says nothing about a
//     higher one: it stays.
//
// minRTT is the lowest window median seen (a faster backend is believed
// at once), and follows any window run at half the limit or less, where
// little can queue (a slower backend is believed too). So that a backend
// always busy to its limit shows its unqueued latency now and then, the
// limit is halved for one window every probeEvery (jittered), and that
// window's median becomes minRTT, as Envoy re-measures its minimum RTT.
//
// A new backend (a new process: every start, restart, rolling restart and
// recycling makes one) starts at the lower bound and learns again. Only
// requests the backend answered in full count: not refusals, not answers
// the client left before, not 5xx (a quick 503 is no measure of service),
// not upgraded connections. The limiter is pure: times are passed in, so
// that tests drive it with a simulated clock.
const (
	// limitTolerance is how much above minRTT a window's median may be
	// before requests count as queueing inside the backend: wide enough
	// for the noise of a window's median on a shared machine (a stall
	// of the whole window is what the second window is for), narrow
	// enough that on a backend slower past its parallelism K the limit
	// settles at K or a little over, losing 3% of its throughput or less
	// (fakemodel -curve).
	limitTolerance = 0.2
	// limitSlack is the part of a response time too small to tell
	// queueing from noise: an instant backend's response times are the
	// proxy's own and vary by more than their ratio says.
	limitSlack = 2 * time.Millisecond
	// limitHeadroom is the parallelism measured times which a cut sets the
	// limit: a little queueing keeps a backend busy between requests, and
	// the limit is left to grow past the parallelism to be measured again.
	limitHeadroom = 1.1
	// limitGrowth is how much of itself the limit grows by per window that
	// found it too low, past slow start, away from the knee: back from a
	// cut that noise made within a few windows. limitCreep is the growth
	// up to the knee: a backend serving one at a time, cut to 1.2, is
	// tried at two once in some forty windows; one serving 16, cut to 19,
	// at 20 once in a few.
	limitGrowth = 0.1
	limitCreep  = 0.0125
	// windowSamples and windowMin are the least a window holds: that many
	// responses, and as many as the cap (a round of them), over that long,
	// so that a fast backend's verdicts rest on more than a few samples.
	windowSamples = 3
	windowMin     = 50 * time.Millisecond
	// windowKeep bounds the response times a window keeps for its median;
	// the later ones of a longer window count in its mean in flight only.
	windowKeep = 32
	// probeEvery is how often, give or take a quarter, the limit is halved
	// for one window to measure the backend's unqueued latency again.
	probeEvery = 30 * time.Second
)

// limiter is one backend's adaptive limit. It is guarded by the owning
// balancer's mu, as the backend's counts are.
type limiter struct {
	min, max float64
	// limit is the learned limit; cap, the one in force, is it rounded, or
	// half that during a probe.
	limit     float64
	cap       int
	slowStart bool    // no cut yet: the limit doubles per window
	over      bool    // the last window's r was over the tolerance, not yet acted on
	knee      float64 // the cap at which queueing was last confirmed; 0: none
	minRTT    time.Duration
	probing   bool
	probeAt   time.Time // the next probe, once slow start is over

	// The window: responses to requests that started at since (when the
	// cap last changed) or later, ending at began+windowMin at the
	// earliest.
	since   time.Time
	began   time.Time
	n       int
	rtts    [windowKeep]time.Duration
	concSum float64
	held    bool // the limit held a request back

	// area is the integral of the requests in flight over time, in
	// request-seconds, up to areaAt: the difference between a request's
	// start and end over its duration is its mean in flight.
	area   float64
	areaAt time.Time

	rnd *rand.Rand // jitters the probes
}

// newLimiter returns a limit between min and max (1 <= min <= max),
// starting at min, for a backend added at now.
func newLimiter(min, max int, now time.Time, stream uint64) *limiter {
	l := &limiter{
		min: float64(min), max: float64(max), limit: float64(min),
		slowStart: true, since: now, began: now, areaAt: now,
		rnd: rand.New(rand.NewPCG(stream, uint64(now.UnixNano()))),
	}
	l.cap = l.capOf(l.limit)
	return l
}

// admissionCap is the cap to predict waits by: the learned limit, not the
// probe's half of it, which lasts one window; during slow start, the
// upper bound, since the cap doubles every window while it is held.
func (l *limiter) admissionCap() int {
	if l.slowStart {
		return int(l.max)
	}
	return l.capOf(l.limit)
}

// capOf is the cap in force for a learned limit: the nearest whole
// number, so that a backend measured to work on 1.6 at once (two threads
// of a server that shares a little) gets 2, not 1, which would leave a
// third of it idle.
func (l *limiter) capOf(limit float64) int {
	return int(math.Floor(math.Min(math.Max(limit, l.min), l.max) + 0.5))
}

// advance moves the in-flight area on to now, with inflight requests in
// flight since areaAt, and returns it.
func (l *limiter) advance(now time.Time, inflight int64) float64 {
	if dt := now.Sub(l.areaAt); dt > 0 {
		l.area += float64(inflight) * dt.Seconds()
		l.areaAt = now
	}
	return l.area
}

// hold records that the limit held a request back from the backend.
func (l *limiter) hold() { l.held = true }

// observe takes the response of a request that started at start and was
// answered in full at end, with conc requests in flight on average
// meanwhile (its own included). It reports whether the cap changed.
func (l *limiter) observe(start, end time.Time, conc float64) bool {
	if start.Before(l.since) {
		return false // it started under an earlier limit
	}
	if l.n < windowKeep {
		l.rtts[l.n] = end.Sub(start)
	}
	l.n++
	l.concSum += conc
	if l.n < max(windowSamples, l.cap) || end.Sub(l.began) < windowMin {
		return false
	}
	kept := l.rtts[:min(l.n, windowKeep)]
	slices.Sort(kept)
	rtt := kept[len(kept)/2]
	c := l.concSum / float64(l.n)
	before := l.cap
	l.decide(rtt, c, end)
	l.n, l.concSum, l.held = 0, 0, false
	l.began = end
	if l.cap != before {
		l.since = end
	}
	return l.cap != before
}

// decide ends a window whose median response time was rtt with c in
// flight on average, at now.
func (l *limiter) decide(rtt time.Duration, c float64, now time.Time) {
	if l.probing {
		// At half the limit: the backend's latency with little queueing.
		l.minRTT, l.probing = rtt, false
		l.probeAt = now.Add(l.jitter(probeEvery))
		l.cap = l.capOf(l.limit)
		return
	}
	switch {
	case l.minRTT == 0 || rtt < l.minRTT:
		l.minRTT = rtt
	case c <= math.Max(l.min, l.limit/2):
		// Little could queue: a slower backend is believed, halfway.
		l.minRTT += (rtt - l.minRTT) / 2
	}
	r := float64(rtt) / float64(l.minRTT+limitSlack)
	switch {
	case r > 1+limitTolerance && !l.over:
		l.over = true // perhaps a stall: held, and looked at again
	case r > 1+limitTolerance:
		l.over = false
		l.knee = float64(l.cap)
		l.limit = math.Min(l.limit, math.Max(c/r*limitHeadroom, l.limit/2))
		l.slowStart = false
		l.probeAt = now.Add(l.jitter(probeEvery))
	default:
		l.over = false
		if l.knee > 0 && float64(l.cap) > l.knee {
			l.knee = 0
		}
		switch {
		case !l.held:
		case l.slowStart:
			l.limit *= 2
		case l.knee > 0 && float64(l.cap+1) >= l.knee:
			l.limit *= 1 + limitCreep
		default:
			l.limit *= 1 + limitGrowth
		}
	}
	l.limit = math.Min(math.Max(l.limit, l.min), l.max)
	l.cap = l.capOf(l.limit)
	if l.slowStart && l.cap == int(l.max) {
		l.slowStart = false
		l.probeAt = now.Add(l.jitter(probeEvery))
	}
	if !l.slowStart && !now.Before(l.probeAt) {
		if half := l.capOf(l.limit / 2); half < l.cap && c > float64(half) {
			l.probing, l.cap = true, half
		} else {
			// Half the limit would not lower what is in flight: the
			// windows show the unqueued latency as they are.
			l.probeAt = now.Add(l.jitter(probeEvery))
		}
	}
}

// jitter returns d give or take a quarter, so that backends started
// together do not probe together.
func (l *limiter) jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + l.rnd.Float64()/2))
}
