package balancer

// Passive health: a backend that refused or reset a connection is taken
// out of rotation at once, and its owner told through Failed, only when it
// is dead: its process is gone or failing its liveness checks (Alive,
// asked through alive in retry.go). A
// backend that is merely busy, its accept backlog full, keeps serving.
//
// As Envoy's panic threshold does, ejections never leave fewer than half
// of the backends in rotation: nginx's max_fails, ejecting every replica
// of a flooded service one after the other, turns an overload into 503 "no
// ready replica" for every client. Past the threshold a failing backend
// stays in rotation; its requests are retried on the others.

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
		b.cfg().Logger.Warn("replica failed a request but stays in rotation: ejecting it would leave fewer than half of the replicas serving (panic threshold)",
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
