// Package balancer is mattingctl's reverse proxy: it sends each request to
// one ready backend chosen by a Policy, counting every backend's in-flight
// requests exactly, holds the excess in a bounded FIFO queue when every
// backend is at its cap, retries requests a backend failed to answer on
// another one, and takes backends in and out of rotation for the
// supervisor, which owns the processes behind them.
package balancer

import (
	"math"
	"sync/atomic"
	"time"
)

// Backend is one replica process as the proxy sees it. The supervisor
// creates one for each process it starts (a restarted or replaced replica
// gets a new one, on its new port), so its counters cover that process's
// life; the supervisor adds them up per replica.
type Backend struct {
	// ID is the replica's number and Name its display name.
	ID   int
	Name string
	// Addr is the host:port requests are sent to.
	Addr string
	// Alive reports whether the backend's process is running and passing
	// its liveness checks. A backend that refuses or resets a connection
	// while alive is busy, not dead: it stays in rotation and the request
	// waits or goes to another. Nil means the proxy cannot tell, and takes
	// any refusal or reset for a dead backend. Set it before the backend
	// is added; it is called from many goroutines and must not block.
	Alive func() bool

	// inflight is changed only under the owning Balancer's mu, so that a
	// policy's choice and the count it reads agree; it is atomic so that
	// status reads need no lock.
	inflight atomic.Int64
	requests atomic.Uint64
	errors   atomic.Uint64
	// upgraded counts the backend's upgraded connections (WebSocket
	// tunnels), which hold no in-flight slot; changed under mu too.
	upgraded atomic.Int64
	// oldest is the start of the oldest attempt in flight, in nanoseconds
	// after clockBase plus one; 0 when none is (inflight.go).
	oldest atomic.Int64

	// weight is the backend's share under the weighted policy (SetWeight).
	weight atomic.Int64

	// limit is the cap in force on inflight (0: none): MaxInflight, or
	// what limiter learned; changed under mu, atomic for status reads.
	limit atomic.Int64

	// failed receives a value when the proxy takes the backend out of
	// rotation because it did not answer (passive health).
	failed chan struct{}

	// Guarded by the owning Balancer's mu.
	inRotation bool
	ejected    bool                 // out of rotation by markFailed, until added or removed
	idle       chan struct{}        // closed when out of rotation and inflight and upgraded are 0
	current    int                  // smooth weighted round robin's running weight
	latency    float64              // peak-EWMA of response time, in seconds
	latencyAt  time.Time            // when latency was last updated
	head, tail *attempt             // attempts in flight, oldest first
	hist       latencyHist          // recent response times, for LatencyP99
	harms      [harmRing]harmRecord // its last deliveries that it reset or died of (poison.go)
	harmNext   int                  // where the next goes in harms
	removedAt  time.Time            // when its owner took it out of rotation (Remove); zero while in it
	limiter    *limiter             // its learned cap under AdaptiveInflight, made when first added; nil for a fixed cap

	// spokeHTTP1 is set once it has answered a request over HTTP/1.1;
	// protocol holds what speaksOnlyH2C found (upstream.go).
	spokeHTTP1 atomic.Bool
	protocol   atomic.Int32
}

// Weight returns the backend's share under the weighted policy; zero or
// less counts as 1.
func (be *Backend) Weight() int { return int(be.weight.Load()) }

// SetWeight sets the backend's share under the weighted policy, before it
// is added or while it is in rotation (a live change of --weights): the
// policy reads it at each choice.
func (be *Backend) SetWeight(w int) { be.weight.Store(int64(w)) }

// NewBackend returns a backend named name at addr, not yet in rotation.
func NewBackend(id int, name, addr string) *Backend {
	return &Backend{ID: id, Name: name, Addr: addr, failed: make(chan struct{}, 1)}
}

// InFlight returns the number of requests the backend is serving now.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Limit returns the cap on the requests the backend may have in flight
// now (0: none): Options.MaxInflight, or under AdaptiveInflight what it
// has learned, which changes as it serves. It is 0 before the backend is
// first added.
func (b *Backend) Limit() int64 { return b.limit.Load() }

// Requests returns the number of requests the backend has completed.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Errors returns how many of its requests failed: no response from the
// backend, or a 5xx response.
func (b *Backend) Errors() uint64 { return b.errors.Load() }

// Failed delivers a value each time the proxy takes the backend out of
// rotation because it refused, reset or dropped a request. The owner
// should check it (a readiness probe) and Add it back when it is well.
func (b *Backend) Failed() <-chan struct{} { return b.failed }

// latencyDecay is the time constant of the peak-EWMA latency: a sample's
// weight halves in about 7 s (Linkerd and Finagle use 10 s).
const latencyDecay = 10 * time.Second

// observe folds one response time into the backend's peak-EWMA latency:
// a slower sample is taken at once, a faster one is blended in gradually.
// The caller holds the balancer's lock.
func (b *Backend) observe(d time.Duration, now time.Time) {
	s := d.Seconds()
	if b.latencyAt.IsZero() || s > b.latency {
		b.latency = s
	} else {
		w := math.Exp(-float64(now.Sub(b.latencyAt)) / float64(latencyDecay))
		b.latency = b.latency*w + s*(1-w)
	}
	b.latencyAt = now
	b.hist.observe(d, now)
}
