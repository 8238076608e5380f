package balancer

import (
	"net/http"
	"strings"
	"time"
)

// Upgraded connections (WebSocket) hold a backend's in-flight slot only
// until its 101 Switching Protocols: an idle tunnel costs the model
// nothing, and holding slots would let a few dozen idle sockets lock every
// ordinary request out. From the 101 until the tunnel closes the
// connection is counted in the backend's upgraded tunnels instead, which a
// draining backend waits for as it does for requests. Server-sent event
// streams are ordinary responses: they hold their slot, since the model is
// busy generating them.

// errTooManyUpgrades is why an upgrade request got 503.
const errTooManyUpgrades = "the proxy's limit on upgraded connections (WebSocket) is reached"

// isUpgrade reports whether r asks to switch protocols, as ReverseProxy
// tells one: an Upgrade header and the upgrade token in Connection.
func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// admitUpgrade counts r among the upgrade requests open when it is one,
// and reports whether it may go on. Past Options.MaxUpgraded it answers
// 503 and returns false. An admitted upgrade request is counted until
// endUpgrade.
func (b *Balancer) admitUpgrade(w http.ResponseWriter, r *http.Request) bool {
	if !isUpgrade(r) {
		return true
	}
	if b.cfg().MaxUpgraded <= 0 {
		b.upgrades.Add(1)
		return true
	}
	if reserve(&b.upgrades, 1, int64(b.cfg().MaxUpgraded)) {
		return true
	}
	b.refuseUpgrade(w)
	return false
}

// endUpgrade stops counting r, which admitUpgrade admitted, once its
// handler is done: its tunnel, if any, is closed.
func (b *Balancer) endUpgrade(r *http.Request) {
	if isUpgrade(r) {
		b.upgrades.Add(-1)
	}
}

// upgrade moves attempt a, whose backend answered 101, from the backend's
// requests in flight to its upgraded tunnels: the handshake is a completed
// request, and its slot goes to the next in the queue. Its response time
// is not measured: it says nothing of the model's.
func (a *attempt) upgrade() {
	a.upgraded = true
	be := a.be
	be.requests.Add(1)
	b := a.b
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	be.endLocked(a)
	b.endLimitLocked(a, now) // not full: a tunnel's time is no service time
	be.upgraded.Add(1)
	be.inflight.Add(-1)
	b.dispatchLocked()
}

// endTunnel counts one of be's upgraded connections closed.
func (b *Balancer) endTunnel(be *Backend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	be.upgraded.Add(-1)
	be.closeIdleLocked()
}

// closeIdleLocked tells a Remove caller that be, out of rotation, has
// nothing left open. The caller holds the balancer's mu.
func (be *Backend) closeIdleLocked() {
	if be.idle != nil && be.inflight.Load() == 0 && be.upgraded.Load() == 0 {
		close(be.idle)
		be.idle = nil
	}
}

// Upgraded returns the number of the backend's upgraded connections open
// now (WebSocket tunnels); they are not counted in InFlight.
func (be *Backend) Upgraded() int64 { return be.upgraded.Load() }
