package supervisor

import (
	"fmt"
	"math"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
)

// Autoscaling (--replicas MIN:MAX) is decided here, by a policy that
// starts nothing and reads no clock, as the crash policy is: the loop in
// autoscaleloop.go hands it a reading of the proxy's load every
// autoscaleTick and gets back the replica count to have and why, then acts
// on it. As Kubernetes' HPA and Ray Serve do, it goes up fast and down
// slowly:
//
//   - Up, when requests have waited in the proxy's queue at every reading
//     for the up delay. While requests queue, every replica in rotation is
//     at its cap, so what they complete a second is what a replica can do
//     (perReplica); the count to have is the arrival rate over that,
//     at targetUtilisation, so a step in load is met in one decision rather
//     than one replica per delay. At least one more, at most MAX, and no
//     more than the machine has room for (room.go).
//   - Down, one replica at a time, when for the whole down delay nothing
//     queued and the arrival rate fitted in fewer replicas at
//     targetUtilisation. Steps follow each other, each once the previous
//     one's replica has drained and downStepEvery has passed, for as long
//     as the spare capacity lasts.
//
// The band between targetUtilisation and a queue that lasts is the
// hysteresis: a count the policy steps down to has a fifth to spare, so
// it does not queue, and a count it steps up to is not stepped down from
// until the load falls by that much.

// targetUtilisation is the share of the replicas' capacity the policy
// sizes for: a fifth spare absorbs the jitter of arrivals and service
// times without queueing (the HPA's customary 80%).
const targetUtilisation = 0.8

// downStepEvery is the least time between two steps down.
const downStepEvery = time.Second

// autoscaleReading is what the policy decides from.
type autoscaleReading struct {
	now     time.Time
	current int // the replica count set now
	load    balancer.Load
	// room says how many of more replicas fit, for a scale-up only (it
	// reads memory and the replicas' sizes; room.go).
	room func(more int) room
}

// room is how many more replicas the machine holds, and why not more.
type room struct {
	fits int    // how many of those asked for fit
	why  string // when fewer fit: why, "no room: ..."
}

// autoscaleVerdict is the policy's answer to a reading.
type autoscaleVerdict struct {
	// target is the count to set; the current count when nothing changes.
	target int
	// want is the count the load asks for, before the room check.
	want int
	// reason says why, when target differs from the current count or a
	// scale-up was held back (no room); empty otherwise.
	reason string
}

// autoscaler is the policy's state, between readings. Its zero value is
// not usable: newAutoscaler.
type autoscaler struct {
	min, max           int
	upDelay, downDelay time.Duration

	pressure stretch // requests queued at every reading since pressure.since
	spare    stretch // spare capacity at every reading since spare.since
	lastDown time.Time
	// perReplica is what a replica completed a second at its caps, last
	// measured while requests queued; 0 before any was.
	perReplica float64
	recent     []sample // the readings of the last upDelay, for the arrival rate
}

// stretch is a run of readings that each showed one condition.
type stretch struct {
	since time.Time // the first of the run; zero: no run
	sample
}

// sample is the proxy's counters at one reading.
type sample struct {
	at                 time.Time
	arrived, completed uint64
}

func newAutoscaler(minN, maxN int, up, down time.Duration) *autoscaler {
	return &autoscaler{min: minN, max: maxN, upDelay: up, downDelay: down}
}

// decide returns the count to have after reading r.
func (a *autoscaler) decide(r autoscaleReading) autoscaleVerdict {
	now, l, cur := r.now, r.load, r.current
	s := sample{at: now, arrived: l.Arrived, completed: l.Completed}
	a.remember(s)
	keep := autoscaleVerdict{target: cur, want: cur}
	switch {
	case cur < a.min:
		return a.scaled(autoscaleVerdict{target: a.min, want: a.min, reason: fmt.Sprintf("below the lower bound %d", a.min)})
	case cur > a.max:
		return a.scaled(autoscaleVerdict{target: a.max, want: a.max, reason: fmt.Sprintf("above the upper bound %d", a.max)})
	case l.Backends == 0:
		// Nothing in rotation (starting, crashed): no rate says anything
		// of what a replica does.
		a.pressure, a.spare = stretch{}, stretch{}
		return keep
	}

	if l.Queued == 0 {
		a.pressure = stretch{}
	} else if a.pressure.since.IsZero() {
		a.pressure = stretch{since: now, sample: s}
	}
	queuedFor := now.Sub(a.pressure.since)
	if !a.pressure.since.IsZero() && queuedFor >= time.Second {
		a.perReplica = rate(a.pressure.sample, s, func(s sample) uint64 { return s.completed }) / float64(l.Backends)
	}
	if !a.pressure.since.IsZero() && queuedFor >= a.upDelay && cur < a.max {
		return a.up(r, s, queuedFor)
	}

	perReplica := a.capacity(l)
	arriving := a.arrivalRate()
	fitsIn := cur // replicas the arrivals fit in, at targetUtilisation
	switch {
	case arriving == 0: // none at all: there is no capacity to measure, and none needed
		fitsIn = 0
	case arriving > 0 && perReplica > 0:
		fitsIn = int(math.Ceil(arriving / (perReplica * targetUtilisation)))
	}
	if l.Queued > 0 || cur <= a.min || fitsIn >= cur {
		a.spare = stretch{}
		return keep
	}
	if a.spare.since.IsZero() {
		a.spare = stretch{since: now, sample: s}
	}
	spareFor := now.Sub(a.spare.since)
	if spareFor < a.downDelay || now.Sub(a.lastDown) < downStepEvery {
		return keep
	}
	a.lastDown = now
	to := cur - 1
	return autoscaleVerdict{target: to, want: max(fitsIn, a.min), reason: fmt.Sprintf("%.1f req/s for %s, which %s at %.1f req/s each hold at %d%% or less",
		arriving, seconds(spareFor), replicas(to), perReplica, int(100*targetUtilisation))}
}

// up is decide's answer once requests have queued for the up delay.
func (a *autoscaler) up(r autoscaleReading, s sample, queuedFor time.Duration) autoscaleVerdict {
	cur, l := r.current, r.load
	arriving := rate(a.pressure.sample, s, func(s sample) uint64 { return s.arrived })
	perReplica := a.capacity(l)
	want := cur + 1
	if perReplica > 0 {
		want = max(want, int(math.Ceil(arriving/(perReplica*targetUtilisation))))
	}
	want = min(want, a.max)
	reason := fmt.Sprintf("requests queued for %s (the oldest waiting %s), %.1f req/s arriving, a replica completes %.1f",
		seconds(queuedFor), seconds(l.QueueWait), arriving, perReplica)
	rm := r.room(want - cur)
	if rm.fits <= 0 {
		// Held back: the pressure stays, so the next reading asks again.
		return autoscaleVerdict{target: cur, want: want, reason: rm.why}
	}
	target := want
	if rm.fits < want-cur {
		target = cur + rm.fits
		reason += "; " + rm.why
	}
	return a.scaled(autoscaleVerdict{target: target, want: want, reason: reason})
}

// scaled starts the stretches afresh after a change of count, whose
// effect the next readings are to show.
func (a *autoscaler) scaled(v autoscaleVerdict) autoscaleVerdict {
	a.pressure, a.spare = stretch{}, stretch{}
	return v
}

// capacity is what a replica completes a second at its caps: as measured
// while requests queued, or, before any did, by Little's law from the caps
// in force and the mean service time; 0 when neither is known.
func (a *autoscaler) capacity(l balancer.Load) float64 {
	if a.perReplica > 0 {
		return a.perReplica
	}
	if l.Slots <= 0 || l.ServiceTime <= 0 || l.Backends == 0 {
		return 0
	}
	return float64(l.Slots) / float64(l.Backends) / l.ServiceTime.Seconds()
}

// remember keeps s and the readings of the last up delay before it.
func (a *autoscaler) remember(s sample) {
	a.recent = append(a.recent, s)
	drop := 0
	for drop < len(a.recent)-1 && s.at.Sub(a.recent[drop+1].at) >= a.upDelay {
		drop++
	}
	a.recent = append(a.recent[:0], a.recent[drop:]...)
}

// arrivalRate is the requests arriving a second over the last up delay,
// or -1 when the readings span less than a second.
func (a *autoscaler) arrivalRate() float64 {
	first, last := a.recent[0], a.recent[len(a.recent)-1]
	if last.at.Sub(first.at) < time.Second {
		return -1
	}
	return rate(first, last, func(s sample) uint64 { return s.arrived })
}

// rate is how fast the counter of went up from s0 to s1, a second.
func rate(s0, s1 sample, of func(sample) uint64) float64 {
	d := s1.at.Sub(s0.at).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(of(s1)-of(s0)) / d
}

// seconds writes d as a reason shows it: "4.1 s", "90 s".
func seconds(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// replicas writes "1 replica", "3 replicas".
func replicas(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}
