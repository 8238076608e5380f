package balancer

import "time"

// How the proxy keeps each backend to its cap, fixed (MaxInflight) or
// learned (AdaptiveInflight, limiter.go). Everything here runs under
// Balancer.mu, where the in-flight counts change and the policy picks, so
// that a pick, the count it reads and the cap it is held to agree.

// capLocked returns the cap in force on be's requests in flight, 0 for
// none. The caller holds b.mu.
func (b *Balancer) capLocked(be *Backend) int {
	if be.limiter != nil {
		return be.limiter.cap
	}
	return b.cfg().MaxInflight
}

// roomLocked reports whether be may take one more request. A backend the
// learned cap keeps from one is told, so that its limiter knows its cap
// held a request back. The caller holds b.mu.
func (b *Balancer) roomLocked(be *Backend) bool {
	c := b.capLocked(be)
	if c <= 0 || be.inflight.Load() < int64(c) {
		return true
	}
	if be.limiter != nil {
		be.limiter.hold()
	}
	return false
}

// slotsLocked returns the requests the backends in rotation hold at their
// caps, for the predicted wait (admission.go); 0 when a backend has no
// cap. A learned cap counts as what it would be after a probe, and as its
// upper bound during slow start, when it doubles every round: a
// prediction from a cap about to grow would refuse requests that fit. The
// caller holds b.mu.
func (b *Balancer) slotsLocked() int {
	if !b.cfg().Adaptive() {
		return len(b.pool) * b.cfg().MaxInflight
	}
	slots := 0
	for _, be := range b.pool {
		slots += be.limiter.admissionCap()
	}
	return slots
}

// startLimitLocked moves be's in-flight area on as a starts, before it is
// counted. The caller holds b.mu.
func (be *Backend) startLimitLocked(a *attempt) {
	if be.limiter != nil {
		a.area0 = be.limiter.advance(a.start, be.inflight.Load())
	}
}

// endLimitLocked moves be's in-flight area on as a ends at now, before it
// is uncounted, and, when a was answered in full and well (not a 5xx, a
// quick refusal that says nothing of the service time), lets be's limiter
// take its response time. The caller holds b.mu.
func (b *Balancer) endLimitLocked(a *attempt, now time.Time) {
	l := a.be.limiter
	if l == nil {
		return
	}
	area := l.advance(now, a.be.inflight.Load())
	d := now.Sub(a.start)
	if !a.full || a.code >= 500 || d <= 0 {
		return
	}
	if l.observe(a.start, now, (area-a.area0)/d.Seconds()) {
		a.be.limit.Store(int64(b.capLocked(a.be)))
	}
}
