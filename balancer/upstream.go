package balancer

import (
	"net/http"
	"strings"
)

// With Options.UpstreamH2C the transport speaks HTTP/2 over cleartext with
// prior knowledge (h2c) to the backends, as gRPC servers expect: calls are
// multiplexed as streams over one connection per backend, and another is
// opened only when a backend's SETTINGS_MAX_CONCURRENT_STREAMS is reached.
// Everything that counts requests (MaxInflight, least_conn, the queue)
// counts attempts, that is streams, never connections. Clients may speak
// HTTP/1.1 or HTTP/2 either way: the transport translates.

// useH2C makes t speak h2c, and only h2c, to http:// URLs.
func useH2C(t *http.Transport) {
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
}

// errUpgradeOverH2C is the answer to an upgrade request (WebSocket) when
// the backends are spoken to over h2c: HTTP/2 has no Upgrade, and the
// transport would refuse the request as malformed, which would look like
// a backend failing.
const errUpgradeOverH2C = "upgrade requests (WebSocket) cannot be passed to replicas over h2c; run with --upstream-protocol http1 to pass them"

// refuseUpgradeOverH2C answers 501 to an upgrade request when the backends
// are spoken to over h2c, and reports whether it did. An upgrade to h2c
// itself is the front end's business, not a tunnel to a backend.
func (b *Balancer) refuseUpgradeOverH2C(w http.ResponseWriter, r *http.Request) bool {
	if !b.opts.UpstreamH2C || !isUpgrade(r) || strings.EqualFold(r.Header.Get("Upgrade"), "h2c") {
		return false
	}
	writeError(w, http.StatusNotImplemented, errUpgradeOverH2C)
	return true
}
