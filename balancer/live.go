package balancer

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A running balancer's limits and policy can change (`mattingctl set`,
// `mattingctl reload`). The Options in force are an immutable value
// behind an atomic pointer: Reconfigure stores a new copy, and every read
// loads one, so a request never sees half of a change. What a request
// decides when it starts (its queue deadline, its upstream transport, its
// watchdog's timeouts) it keeps: it finishes under the settings it
// started with. The caps on requests in flight are re-made under mu, in
// the same step, so that no backend is seen with the old cap and the new
// policy.

// cfg returns the Options in force. The value must not be changed.
func (b *Balancer) cfg() *Options { return b.opts.Load() }

// fixedLimits names the Limits that Reconfigure cannot change, by field:
// each was made into something at New (the listener's cap, the body
// budgets, the client shares, the quarantine, the server's own header and
// HTTP/2 write timeouts, the watchdogs' period).
var fixedLimits = []struct {
	name  string
	equal func(a, b *Limits) bool
}{
	{"MaxConns", func(a, b *Limits) bool { return a.MaxConns == b.MaxConns }},
	{"MaxBuffer", func(a, b *Limits) bool { return a.MaxBuffer == b.MaxBuffer }},
	{"MaxDiskBuffer", func(a, b *Limits) bool { return a.MaxDiskBuffer == b.MaxDiskBuffer }},
	{"BufferDir", func(a, b *Limits) bool { return a.BufferDir == b.BufferDir }},
	{"MaxClientUploads", func(a, b *Limits) bool { return a.MaxClientUploads == b.MaxClientUploads }},
	{"MaxClientBuffer", func(a, b *Limits) bool { return a.maxClientBuffer() == b.maxClientBuffer() }},
	{"Quarantine", func(a, b *Limits) bool { return a.Quarantine == b.Quarantine }},
	{"ClientTimeout", func(a, b *Limits) bool { return a.ClientTimeout == b.ClientTimeout }},
	{"SendTimeout", func(a, b *Limits) bool { return a.SendTimeout == b.SendTimeout }},
}

// Reconfigure puts limits and policy in force for the requests that
// arrive from now on; nil policy keeps the one in force. The requests in
// flight and waiting finish under what they started with, except that
// each backend's cap on requests in flight becomes the new one at once
// (a learned cap starts learning afresh, at the new lower bound, when the
// bounds change or it replaces a fixed cap), and waiting requests are
// dispatched if the new caps make room. It returns an error naming the
// fields that cannot change on a running balancer (fixedLimits), and then
// changes nothing.
func (b *Balancer) Reconfigure(limits Limits, policy Policy) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.cfg()
	var fixed []string
	for _, f := range fixedLimits {
		if !f.equal(&old.Limits, &limits) {
			fixed = append(fixed, f.name)
		}
	}
	if len(fixed) > 0 {
		return fmt.Errorf("cannot change on a running balancer: %v", fixed)
	}
	n := *old
	n.Limits = limits
	if policy != nil {
		n.Policy = policy
	}
	if n.ConnectTimeout != old.ConnectTimeout || n.UpstreamTimeout != old.UpstreamTimeout ||
		n.MostInflight() != old.MostInflight() {
		b.transport.swap(newTransport(&n))
	}
	b.opts.Store(&n)
	now := time.Now()
	for _, be := range b.pool {
		b.fitLimiterLocked(be, &n, now)
	}
	b.dispatchLocked()
	return nil
}

// fitLimiterLocked gives be the cap o asks for: a limiter learning
// between o's bounds (a new one, starting at the lower bound, if it had
// none or other bounds), or none for a fixed cap; and publishes the cap in
// force. The caller holds b.mu.
func (b *Balancer) fitLimiterLocked(be *Backend, o *Options, now time.Time) {
	if !o.Adaptive() {
		be.limiter = nil
	} else if bounds := o.learnedBounds(); be.limiter == nil ||
		be.limiter.min != float64(bounds.Min) || be.limiter.max != float64(bounds.Max) {
		// A new process, or new bounds, learns afresh from the lower one.
		be.limiter = newLimiter(bounds.Min, bounds.Max, now, uint64(be.ID))
	}
	be.limit.Store(int64(b.capLocked(be)))
}

// newTransport returns the upstream transport for o: its connect and
// response-header timeouts and its idle connections per backend follow
// o's limits. HTTP/1.1 backends get the proxy's own client; h2c ones
// net/http's Transport, which multiplexes requests over a connection.
func newTransport(o *Options) upstream {
	if !o.UpstreamH2C {
		return newH1Client(o)
	}
	t := &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   o.ConnectTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// The default keeps 2 idle connections per host, which under load
		// means a new TCP connection for most requests; more than a
		// backend's cap of requests in flight, and a few being closed or
		// set up, would only idle (a flood of cancelled requests once left
		// 1,100 for 90 s).
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   maxIdlePerBackend(o.MostInflight()),
		IdleConnTimeout:       upstreamIdleTimeout,
		ResponseHeaderTimeout: o.UpstreamTimeout,
		DisableCompression:    true,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        64 << 10,
	}
	useH2C(t)
	return t
}

// upstream is a transport to the backends: the HTTP/1.1 client
// (h1client.go), or net/http's Transport for h2c backends.
type upstream interface {
	http.RoundTripper
	CloseIdleConnections()
}

// liveTransport is the proxy's upstream RoundTripper: the transport in
// force, which Reconfigure swaps. A request keeps the transport it
// started on, with its timeouts; the ones replaced keep their
// connections in use until those requests end, and are closed with the
// rest at Shutdown.
type liveTransport struct {
	cur atomic.Pointer[upstreamBox]

	mu  sync.Mutex // guards all
	all []upstream // every transport made, the one in force last
}

type upstreamBox struct{ upstream }

// h1 returns the transport in force when it is the HTTP/1.1 client; nil
// when it is not.
func (t *liveTransport) h1() *h1Client {
	c, _ := t.cur.Load().upstream.(*h1Client)
	return c
}

// RoundTrip sends r on the transport in force.
func (t *liveTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}

// swap puts n in force, and closes the idle connections of the one it
// replaces: new requests connect afresh, with n's timeouts.
func (t *liveTransport) swap(n upstream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.cur.Swap(&upstreamBox{n}); old != nil {
		old.CloseIdleConnections()
	}
	t.all = append(t.all, n)
}

// CloseIdleConnections closes the idle connections of every transport
// made, for Shutdown: one replaced may have got back a connection since.
func (t *liveTransport) CloseIdleConnections() {
	t.mu.Lock()
	all := slices.Clone(t.all)
	t.mu.Unlock()
	for _, tr := range all {
		tr.CloseIdleConnections()
	}
}
