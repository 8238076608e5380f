package balancer

import (
	"context"
	"time"
)

// Passive health: a backend that refused or reset a connection is taken
// out of rotation at once, and its owner told through Failed, only when it
// is dead: its process is gone or failing its liveness checks (Alive). A
// backend that is merely busy, its accept backlog full, keeps serving.
//
// As Envoy's panic threshold does, ejections never leave fewer than half
// of the backends in rotation: nginx's max_fails, ejecting every replica
// of a flooded service one after the other, turns an overload into 503 "no
// ready replica" for every client. Past the threshold a failing backend
// stays in rotation; its requests are retried on the others.

// aliveSettle is how long the proxy waits, after a backend said to be alive
// refused or reset a connection, before asking again. A process that has
// just died closes its sockets a moment before its owner learns of its
// exit; and a busy one is given a moment before the request tries again.
const aliveSettle = 50 * time.Millisecond

// alive reports whether be, which refused or reset a connection, is alive
// and so busy rather than dead. Without an Alive function it is taken for
// dead, as before backends could tell.
func (b *Balancer) alive(ctx context.Context, be *Backend) bool {
	if be.Alive == nil || !be.Alive() {
		return false
	}
	t := time.NewTimer(aliveSettle)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return be.Alive()
}

// markFailed takes be out of rotation at once because it is dead (passive
// health) and tells its owner through be.Failed, unless that would leave
// fewer than half of the backends in rotation (the panic threshold).
func (b *Balancer) markFailed(be *Backend) {
	b.mu.Lock()
	if !be.inRotation {
		b.mu.Unlock()
		return
	}
	// The backends are those in rotation and those ejected; the others
	// (starting, draining, unhealthy) are their owners' to count.
	total := len(b.pool) + b.ejected
	if 2*(len(b.pool)-1) < total {
		b.mu.Unlock()
		b.opts.Logger.Warn("replica failed a request but stays in rotation: ejecting it would leave fewer than half of the replicas serving (panic threshold)",
			"replica", be.Name, "in_rotation", total-b.ejected, "ejected", b.ejected)
		return
	}
	b.removeLocked(be)
	be.ejected = true
	b.ejected++
	b.mu.Unlock()
	select {
	case be.failed <- struct{}{}:
	default:
	}
}

// unejectLocked forgets that be was ejected, as it is added back or
// removed for good. The caller holds b.mu.
func (b *Balancer) unejectLocked(be *Backend) {
	if be.ejected {
		be.ejected = false
		b.ejected--
	}
}
