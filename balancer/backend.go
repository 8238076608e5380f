// Package balancer is mattingctl's reverse proxy: it sends each request to
// one ready backend chosen by a Policy, counting every backend's in-flight
// requests exactly, and takes backends in and out of rotation for the
// supervisor, which owns the processes behind them.
package balancer

import (
	"sync/atomic"
)

// Backend is one replica as the proxy sees it. The supervisor creates one
// per replica and keeps it across the replica's restarts, so its counters
// cover the replica's whole life.
type Backend struct {
	// ID is the replica's number and Name its display name.
	ID   int
	Name string
	// Addr is the host:port requests are sent to.
	Addr string

	// inflight is changed only under the owning Balancer's mu, so that a
	// policy's choice and the count it reads agree; it is atomic so that
	// status reads need no lock.
	inflight atomic.Int64
	requests atomic.Uint64
	errors   atomic.Uint64

	// Guarded by the owning Balancer's mu.
	inRotation bool
	idle       chan struct{} // closed when out of rotation and inflight is 0
}

// NewBackend returns a backend named name at addr, not yet in rotation.
func NewBackend(id int, name, addr string) *Backend {
	return &Backend{ID: id, Name: name, Addr: addr}
}

// InFlight returns the number of requests the backend is serving now.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Requests returns the number of requests the backend has completed.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Errors returns how many of its requests failed: no response from the
// backend, or a 5xx response.
func (b *Backend) Errors() uint64 { return b.errors.Load() }
