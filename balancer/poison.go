package balancer

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// A poison request is one that breaks the replica it is delivered to: the
// model server crashes on it, or resets the connection (a Python handler
// that raises, a gunicorn worker that segfaults while its arbiter lives
// on). Each delivery counts against --retries, and at the second that
// killed or reset a replica the request stops with a 502 (retry.go).
//
// A replica its owner was stopping (drained, then killed at the stop
// deadline; unhealthy, then restarted) was not killed by its requests:
// such a failure counts against --retries but not as a harm.
//
// Whether it is also quarantined (quarantine.go) depends on blame: a
// replica that crashed, or reset connections because it was overloaded,
// broke every request it held, and none of them is to blame. So each
// backend keeps its last few harms, and a harm is the request's own only
// when no other request that was under way at the same time had its
// delivery to that backend fail within harmWindow of it. A request is
// quarantined only when both its harms were its own: collateral damage,
// and the overload of a replica that resets connections past its capacity
// (--max-inflight 0), never quarantine a request; poison requests one
// after another each are.

// harmWindow is how near in time two requests' failures on one backend
// must be for neither to be blamed alone.
const harmWindow = 500 * time.Millisecond

// harmRing is how many recent harms each backend remembers: enough that
// a burst of harms by requests that came after a failure (a replica
// resetting dozens of connections past its capacity while their clients
// send again) cannot push out, within aliveSettle, the harms that shared
// it, which would make the failure look like one request's own. With 8,
// e2e TestBusyReplicasAreNotEjected saw one request of an overload
// quarantined in two of five CI runs on a busy machine; such a burst is
// how that can happen.
const harmRing = 64

// harmRecord is one delivery that killed or reset a backend: when, and by
// which request (exchange.id), which began at start.
type harmRecord struct {
	at, start time.Time
	id        uint64
}

// recordHarm notes that x's delivery to be failed at, killing or resetting
// it (or so it seems until failureOf says).
func (b *Balancer) recordHarm(be *Backend, x *exchange, at time.Time) {
	if x.id == 0 {
		x.id = b.exchanges.Add(1)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	be.harms[be.harmNext%harmRing] = harmRecord{at: at, start: x.start, id: x.id}
	be.harmNext++
}

// blame says what attempt a of x, which failed with f at at, says against
// x: innocent unless it killed or reset its backend before it responded,
// and the backend's owner was not stopping it (taken out of rotation by
// Remove before the failure: a replica killed at the end of its drain, or
// for being unhealthy, was not killed by its requests); then alone or
// shared, as blamed says.
func (b *Balancer) blame(x *exchange, a *attempt, f failure, at time.Time) blame {
	if !f.harmful() || a.responded {
		return innocent
	}
	b.mu.Lock()
	removed := a.be.removedAt
	b.mu.Unlock()
	if !removed.IsZero() && removed.Before(at.Add(-aliveSettle)) {
		return innocent
	}
	if b.blamed(x.ctx, a.be, x, at) {
		return alone
	}
	return shared
}

// blamed reports whether the harm x did be at at is x's alone: no other
// request under way with x had its delivery to be fail within harmWindow
// of it. It first waits until aliveSettle after at, so that the failures
// of the other requests a crash or an overload broke at the same moment
// are recorded too.
func (b *Balancer) blamed(ctx context.Context, be *Backend, x *exchange, at time.Time) bool {
	waitUntil(ctx, at.Add(aliveSettle))
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, h := range be.harms {
		together := h.start.Before(at) && x.start.Before(h.at)
		if h.id != 0 && h.id != x.id && together && h.at.Sub(at).Abs() < harmWindow {
			return false
		}
	}
	return true
}

// harmText describes a harmful failure f of be, for the client and the
// log.
func harmText(f failure, be *Backend) string {
	if f == reset {
		return "reset by " + be.Name
	}
	return be.Name + " died"
}

// refusePoison answers x, whose deliveries killed or reset replicas twice
// (x.harms says how), with 502 naming the cause, and quarantines it when
// both were its own doing.
func (b *Balancer) refusePoison(x *exchange) {
	msg := "the request was not answered: its deliveries broke replicas twice (" + strings.Join(x.harms, ", then ") +
		"); it is likely what breaks them, so it was not sent again"
	quarantine := x.retry.blamed >= maxHarms && b.quarantine.ttl > 0
	if quarantine {
		key := x.body.key(x.r.Method, x.r.URL.RequestURI())
		msg += "; the same request is refused for " + b.quarantine.ttl.String() + " (quarantined, sha256 " + key.String()[:16] + ")"
		b.quarantine.add(key, x.body.Len(), msg, time.Now())
		b.quarantined.Add(1)
		b.cfg().Logger.Warn("quarantined a request that broke replicas twice", "method", x.r.Method, "path", x.r.URL.Path,
			"sha256", key.String(), "harms", strings.Join(x.harms, ", then "), "for", b.quarantine.ttl)
	}
	b.failed.Add(1)
	b.outcomes.poisoned.Add(1)
	x.code = http.StatusBadGateway
	refuse(x.w, x.r, x.code, grpcInternal, msg)
}

// refuseQuarantined answers x 502 at once, and returns true, when its
// request is quarantined.
func (b *Balancer) refuseQuarantined(x *exchange) bool {
	if !b.quarantine.mayHold(x.body.Len()) {
		return false
	}
	msg, ok := b.quarantine.lookup(x.body.key(x.r.Method, x.r.URL.RequestURI()), time.Now())
	if !ok {
		return false
	}
	b.failed.Add(1)
	b.quarantineHits.Add(1)
	b.outcomes.quarantineHits.Add(1)
	x.code = http.StatusBadGateway
	refuse(x.w, x.r, x.code, grpcInternal, msg)
	return true
}
