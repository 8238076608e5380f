package balancer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The limiter against a simulated backend with a known capacity curve:
// it serves k requests at once at full speed, and shares that speed among
// more (processor sharing, as k cores do), so that a request takes base
// when k or fewer are in flight and base*n/k when n > k are. Throughput is
// the highest from k in flight on; latency is the lowest up to k. A closed
// loop of clients keeps it busy through a FIFO queue, as the proxy's is,
// and the clock is the simulation's own.

// simBackend is the simulated backend's curve, which a test may change as
// the simulation runs.
type simBackend struct {
	k      float64       // requests served at once at full speed
	base   time.Duration // a request's time at full speed
	jitter float64       // each request's work is base times 1±jitter
	// thrash slows every request further past k in flight, by this much
	// per k more (fakemodel's -curve), so that throughput falls past k.
	thrash float64
}

type simJob struct {
	start time.Time
	left  float64 // work left, in seconds at full speed
	area0 float64
}

// simRun is what a simulation saw after its warm-up.
type simRun struct {
	caps      []int // the cap in force at every step
	completed int
	elapsed   time.Duration
	minCap    int // the lowest and highest cap after the warm-up
	maxCap    int
}

func (r simRun) throughput() float64 { return float64(r.completed) / r.elapsed.Seconds() }

// medianCap returns the median of the caps seen.
func (r simRun) medianCap() int {
	c := slices.Clone(r.caps)
	slices.Sort(c)
	return c[len(c)/2]
}

// share returns the share of the time the cap was within [lo, hi].
func (r simRun) share(lo, hi int) float64 {
	in := 0
	for _, c := range r.caps {
		if c >= lo && c <= hi {
			in++
		}
	}
	return float64(in) / float64(len(r.caps))
}

const simStep = time.Millisecond

// simulate runs clients in a closed loop against be through l for d, from
// start, and reports what it saw from warm on. change, if not nil, is
// called at every step to change the backend.
func simulate(l *limiter, be *simBackend, clients int, start time.Time, d, warm time.Duration, change func(elapsed time.Duration, be *simBackend)) simRun {
	rnd := rand.New(rand.NewPCG(1, 2))
	var active []*simJob
	queued := clients
	run := simRun{minCap: l.cap, maxCap: l.cap}
	if warm > 0 {
		run.minCap, run.maxCap = math.MaxInt, 0
	}
	now := start
	for elapsed := time.Duration(0); elapsed < d; elapsed += simStep {
		now = now.Add(simStep)
		if change != nil {
			change(elapsed, be)
		}
		n := float64(len(active))
		rate := min(1, be.k/max(n, 1)) / (1 + be.thrash*max(0, n-be.k)/be.k)
		kept := active[:0]
		for _, j := range active {
			j.left -= simStep.Seconds() * rate
			if j.left > 0 {
				kept = append(kept, j)
				continue
			}
			area := l.advance(now, int64(len(active)))
			conc := (area - j.area0) / now.Sub(j.start).Seconds()
			l.observe(j.start, now, conc)
			if elapsed >= warm {
				run.completed++
			}
			queued++ // the client sends its next request at once
		}
		if len(kept) != len(active) {
			l.advance(now, int64(len(active)))
		}
		active = kept
		for queued > 0 {
			if len(active) >= l.cap {
				l.hold()
				break
			}
			work := be.base.Seconds() * (1 + be.jitter*(2*rnd.Float64()-1))
			active = append(active, &simJob{start: now, left: work, area0: l.advance(now, int64(len(active)))})
			queued--
		}
		if elapsed >= warm {
			run.minCap, run.maxCap = min(run.minCap, l.cap), max(run.maxCap, l.cap)
			run.caps = append(run.caps, l.cap)
			run.elapsed += simStep
		}
	}
	return run
}

// TestLimiterConvergesNearTheBackendsParallelism: for k = 1, 4 and 16,
// from the lower bound, the cap settles within half again of k, and the
// backend's throughput is at least 95% of its best (k/base), whether it
// keeps its throughput past k (processor sharing) or loses some (thrash,
// as fakemodel's -curve does).
func TestLimiterConvergesNearTheBackendsParallelism(t *testing.T) {
	for _, thrash := range []float64{0, 0.25} {
		for _, k := range []int{1, 4, 16} {
			t.Run(fmt.Sprintf("k=%d,thrash=%g", k, thrash), func(t *testing.T) {
				t0 := time.Unix(1_000_000, 0)
				l := newLimiter(1, 64, t0, 1)
				be := &simBackend{k: float64(k), base: 100 * time.Millisecond, jitter: 0.1, thrash: thrash}
				run := simulate(l, be, 4*k+8, t0, 120*time.Second, 20*time.Second, nil)
				best := float64(k) / be.base.Seconds()
				t.Logf("median cap %d, range %d-%d, throughput %.1f/s of %.1f/s (%.1f%%), cap within [k/2, 1.5k] %.0f%% of the time",
					run.medianCap(), run.minCap, run.maxCap, run.throughput(), best, 100*run.throughput()/best, 100*run.share((k+1)/2, k+k/2))
				if m := run.medianCap(); 2*m < k || 2*m > 3*k {
					t.Errorf("median cap %d, want within half again of %d", m, k)
				}
				if run.share((k+1)/2, k+k/2) < 0.9 {
					t.Errorf("the cap was within half again of %d only %.0f%% of the time", k, 100*run.share((k+1)/2, k+k/2))
				}
				if run.throughput() < 0.95*best {
					t.Errorf("throughput %.1f/s, want at least 95%% of %.1f/s", run.throughput(), best)
				}
			})
		}
	}
}

// TestLimiterGrowsWithinSeconds: a new backend that serves 16 at once,
// taking 100 ms a request, is given 16 within 3 seconds of its first
// request, starting from 1.
func TestLimiterGrowsWithinSeconds(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLimiter(1, 64, t0, 1)
	var reached time.Duration = -1
	simulate(l, &simBackend{k: 16, base: 100 * time.Millisecond}, 100, t0, 5*time.Second, 0, func(elapsed time.Duration, _ *simBackend) {
		if reached < 0 && l.cap >= 16 {
			reached = elapsed
		}
	})
	if reached < 0 || reached > 3*time.Second {
		t.Fatalf("cap reached 16 after %v, want within 3s", reached)
	}
	t.Logf("cap reached 16 after %v", reached)
}

// TestLimiterStartsLow: a new limiter's cap is its lower bound, whatever
// an earlier one (the replica's previous process) learned.
func TestLimiterStartsLow(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	old := newLimiter(2, 64, t0, 1)
	simulate(old, &simBackend{k: 32, base: 50 * time.Millisecond}, 200, t0, 30*time.Second, 0, nil)
	if old.cap < 24 {
		t.Fatalf("the first limiter learned %d of 32, want more to tell a restart", old.cap)
	}
	if l := newLimiter(2, 64, t0.Add(30*time.Second), 2); l.cap != 2 {
		t.Fatalf("a new limiter starts at %d, want its lower bound 2", l.cap)
	}
}

// TestLimiterShrinksWhenTheBackendSlows: a backend that served 16 at once
// comes to serve 4 (another process takes its cores): the cap follows
// within seconds, and settles within half again of 4. Then its requests
// take twice as long at any load (a model swapped for a bigger one): the
// cap dips and comes back near 4.
func TestLimiterShrinksWhenTheBackendSlows(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLimiter(1, 64, t0, 1)
	be := &simBackend{k: 16, base: 100 * time.Millisecond, jitter: 0.1}
	var afterSlow []int
	var shrunk time.Duration = -1
	run := simulate(l, be, 100, t0, 150*time.Second, 110*time.Second, func(elapsed time.Duration, be *simBackend) {
		switch {
		case elapsed == 30*time.Second:
			if l.cap < 16 {
				t.Errorf("cap %d before the slowdown, want at least 16", l.cap)
			}
			be.k = 4
		case elapsed > 30*time.Second && elapsed < 70*time.Second:
			if shrunk < 0 && l.cap <= 6 {
				shrunk = elapsed - 30*time.Second
			}
			if elapsed > 50*time.Second {
				afterSlow = append(afterSlow, l.cap)
			}
		case elapsed == 70*time.Second:
			be.base *= 2
		}
	})
	if shrunk < 0 || shrunk > 5*time.Second {
		t.Fatalf("cap came to 6 or less %v after the backend came to serve 4, want within 5s", shrunk)
	}
	slices.Sort(afterSlow)
	if m := afterSlow[len(afterSlow)/2]; m < 2 || m > 6 {
		t.Errorf("median cap %d once the backend serves 4, want 2-6", m)
	}
	if m := run.medianCap(); m < 2 || m > 6 {
		t.Errorf("median cap %d after the requests came to take twice as long, want 2-6", m)
	}
	if best := 4 / be.base.Seconds(); run.throughput() < 0.9*best {
		t.Errorf("throughput %.1f/s after the requests came to take twice as long, want at least 90%% of %.1f/s", run.throughput(), best)
	}
	t.Logf("shrunk to 6 or less in %v; median caps %d, %d", shrunk, afterSlow[len(afterSlow)/2], run.medianCap())
}

// TestLimiterStaysWithinItsBounds: a backend that could take 100 at once
// gets at most the upper bound, one that serves 1 at least the lower.
func TestLimiterStaysWithinItsBounds(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	high := newLimiter(1, 8, t0, 1)
	run := simulate(high, &simBackend{k: 100, base: 100 * time.Millisecond, jitter: 0.1}, 200, t0, 30*time.Second, 10*time.Second, nil)
	if run.maxCap > 8 || run.medianCap() != 8 {
		t.Errorf("bounds 1-8 against a backend of 100: cap up to %d, median %d; want 8", run.maxCap, run.medianCap())
	}
	low := newLimiter(3, 32, t0, 1)
	run = simulate(low, &simBackend{k: 1, base: 100 * time.Millisecond, jitter: 0.1}, 50, t0, 30*time.Second, 0, nil)
	if run.minCap < 3 {
		t.Errorf("bounds 3-32 against a backend of 1: cap down to %d, want never below 3", run.minCap)
	}
}

// TestLimiterIgnoresALightLoad: a load that never reaches the limit does
// not raise it, so that a burst after a quiet spell does not flood the
// backend. The first window of the light load may still end one that
// began under the heavy load, so the cap is taken a second in.
func TestLimiterIgnoresALightLoad(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLimiter(1, 64, t0, 1)
	simulate(l, &simBackend{k: 16, base: 100 * time.Millisecond}, 100, t0, 10*time.Second, 0, nil)
	learned := -1
	run := simulate(l, &simBackend{k: 16, base: 100 * time.Millisecond}, 3, t0.Add(10*time.Second), 60*time.Second, time.Second, func(elapsed time.Duration, _ *simBackend) {
		if elapsed == time.Second {
			learned = l.cap
		}
	})
	if learned < 16 {
		t.Fatalf("cap %d a second into the light load, want the heavy load's 16 or more", learned)
	}
	if run.maxCap > learned {
		t.Errorf("cap rose from %d to %d under 3 clients", learned, run.maxCap)
	}
}

// TestLimiterDecide: one window's verdict.
func TestLimiterDecide(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	ms := time.Millisecond
	tests := []struct {
		name      string
		limit     float64
		slowStart bool
		over      bool    // the window before was over the tolerance
		knee      float64 // the cap queueing was last seen at
		minRTT    time.Duration
		rtt       time.Duration
		c         float64
		held      bool
		wantLimit float64
		wantMin   time.Duration
		wantOver  bool
	}{
		{"first window sets the minimum, and slow start doubles", 1, true, false, 0, 0, 100 * ms, 1, true, 2, 100 * ms, false},
		{"slow start without a held request stays", 4, true, false, 0, 100 * ms, 100 * ms, 2, false, 4, 100 * ms, false},
		{"past slow start, a held request grows it by limitGrowth", 10, false, false, 0, 100 * ms, 110 * ms, 10, true, 10 * (1 + limitGrowth), 100 * ms, false},
		{"one window over the tolerance is held, not cut", 32, true, false, 0, 100 * ms, 200 * ms, 32, true, 32, 100 * ms, true},
		{"the second cuts to the parallelism with headroom", 32, true, true, 0, 100 * ms, 200 * ms, 32, true, 32 / (200.0 / 102) * limitHeadroom, 100 * ms, false},
		{"a window within the tolerance clears the first", 32, true, true, 0, 100 * ms, 110 * ms, 32, true, 64, 100 * ms, false},
		{"a cut never raises the limit", 10, false, true, 0, 100 * ms, 150 * ms, 20, true, 10, 100 * ms, false},
		{"a cut is never below half", 20, false, true, 0, 100 * ms, 1000 * ms, 20, true, 10, 100 * ms, false},
		{"a cut stops at the lower bound", 1.5, false, true, 0, 100 * ms, 1000 * ms, 2, true, 1, 100 * ms, false},
		{"growth stops at the upper bound", 63.9, false, false, 0, 100 * ms, 100 * ms, 63, true, 64, 100 * ms, false},
		{"growth creeps when the next cap is the knee", 1.5, false, false, 2, 100 * ms, 100 * ms, 1, true, 1.5 * (1 + limitCreep), 100 * ms, false},
		{"growth is full speed below the knee", 10.5, false, false, 20, 100 * ms, 100 * ms, 10, true, 10.5 * (1 + limitGrowth), 100 * ms, false},
		{"a faster window lowers the minimum at once", 8, false, false, 0, 100 * ms, 50 * ms, 8, false, 8, 50 * ms, false},
		{"a slower window at half the limit raises it halfway", 8, false, false, 0, 100 * ms, 150 * ms, 4, false, 8, 125 * ms, false},
		{"a window much slower at half the limit is queueing still", 8, false, true, 0, 100 * ms, 300 * ms, 4, false, 4, 200 * ms, false},
		{"a slower window at the limit leaves it", 8, false, false, 0, 100 * ms, 120 * ms, 8, false, 8, 100 * ms, false},
		{"within the slack of an instant backend is no queueing", 8, false, false, 0, 500 * time.Microsecond, 2 * ms, 8, true, 8 * (1 + limitGrowth), 500 * time.Microsecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(1, 64, t0, 1)
			l.limit, l.slowStart, l.minRTT, l.held, l.over, l.knee = tt.limit, tt.slowStart, tt.minRTT, tt.held, tt.over, tt.knee
			l.cap = l.capOf(l.limit)
			l.probeAt = t0.Add(time.Hour)
			l.decide(tt.rtt, tt.c, t0)
			if diff := l.limit - tt.wantLimit; diff > 1e-9 || diff < -1e-9 {
				t.Errorf("limit %.3f, want %.3f", l.limit, tt.wantLimit)
			}
			if l.minRTT != tt.wantMin {
				t.Errorf("minRTT %v, want %v", l.minRTT, tt.wantMin)
			}
			if l.over != tt.wantOver {
				t.Errorf("over %v, want %v", l.over, tt.wantOver)
			}
		})
	}
}

// TestLimiterProbes: past slow start, a backend busy to its limit has it
// halved for one window every 30 s or so, and that window's median becomes
// the unqueued latency, whatever was measured before.
func TestLimiterProbes(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	ms := time.Millisecond
	l := newLimiter(1, 64, t0, 1)
	l.limit, l.cap, l.slowStart, l.minRTT = 20, 20, false, 50*ms
	l.probeAt = t0.Add(probeEvery)
	l.decide(60*ms, 20, t0.Add(probeEvery)) // within the tolerance: no cut
	if !l.probing || l.cap != 10 {
		t.Fatalf("at the probe time: probing %v, cap %d; want a probe at 10", l.probing, l.cap)
	}
	l.decide(100*ms, 10, t0.Add(probeEvery+time.Second))
	if l.probing || l.cap != 20 || l.minRTT != 100*ms {
		t.Fatalf("after the probe window: probing %v, cap %d, minRTT %v; want 20 again and 100ms", l.probing, l.cap, l.minRTT)
	}
	if next := l.probeAt.Sub(t0.Add(probeEvery + time.Second)); next < probeEvery*3/4 || next > probeEvery*5/4 {
		t.Fatalf("next probe in %v, want %v give or take a quarter", next, probeEvery)
	}
}

// TestLimiterIgnoresStaleResponses: a response to a request that started
// before the cap last changed does not count: it ran under the old cap.
func TestLimiterIgnoresStaleResponses(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLimiter(1, 64, t0, 1)
	l.since = t0.Add(time.Second)
	if l.observe(t0, t0.Add(2*time.Second), 1); l.n != 0 {
		t.Fatalf("a request from before the change was counted")
	}
}
