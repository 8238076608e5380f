package balancer

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
)

// Policy chooses the backend for a request. Select is called with the
// balancer's lock held, one call at a time, so it must be quick and must not
// block; pool is never empty and holds only the backends in rotation that
// have room for one more request. Returning nil means none is suitable.
type Policy interface {
	Select(pool []*Backend, r *http.Request) *Backend
}

var (
	_ Policy = LeastConn{}
	_ Policy = (*RoundRobin)(nil)
	_ Policy = Weighted{}
	_ Policy = IPHash{}
	_ Policy = Fair{}
)

// LeastConn picks the backend with the fewest in-flight requests (requests,
// not TCP connections: a keep-alive connection between requests is free).
// Ties are broken uniformly at random, so equal backends share load evenly.
type LeastConn struct{}

// Select implements Policy.
func (LeastConn) Select(pool []*Backend, _ *http.Request) *Backend {
	return minBy(pool, func(b *Backend) float64 { return float64(b.inflight.Load()) })
}

// minBy returns the backend with the lowest cost, ties broken at random by
// reservoir sampling: the k-th tie replaces the choice with probability 1/k.
func minBy(pool []*Backend, cost func(*Backend) float64) *Backend {
	var best *Backend
	var low float64
	ties := 0
	for _, b := range pool {
		c := cost(b)
		switch {
		case best == nil || c < low:
			best, low, ties = b, c, 1
		case c == low:
			ties++
			if rand.IntN(ties) == 0 {
				best = b
			}
		}
	}
	return best
}

// RoundRobin picks the backends in turn (nginx's default).
type RoundRobin struct {
	next atomic.Uint64
}

// Select implements Policy.
func (p *RoundRobin) Select(pool []*Backend, _ *http.Request) *Backend {
	n := p.next.Add(1) - 1
	return pool[n%uint64(len(pool))]
}

// Weighted picks backends in proportion to their Weight, spread evenly
// rather than in bursts: nginx's smooth weighted round robin (weights 5,1,1
// give a a b a c a a, not a a a a a b c).
type Weighted struct{}

// Select implements Policy.
func (Weighted) Select(pool []*Backend, _ *http.Request) *Backend {
	var best *Backend
	total := 0
	for _, b := range pool {
		w := max(b.Weight(), 1)
		b.current += w
		total += w
		if best == nil || b.current > best.current {
			best = b
		}
	}
	best.current -= total
	return best
}

// IPHash sends each client address to the same backend while that backend
// is available (nginx's ip_hash). It uses rendezvous hashing: each client
// ranks the backends by hash(client, backend) and takes the first one with
// room, so when a backend leaves only its own clients move.
type IPHash struct{}

// Select implements Policy.
func (IPHash) Select(pool []*Backend, r *http.Request) *Backend {
	host := ""
	if r != nil {
		host = r.RemoteAddr
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	var best *Backend
	var bestScore uint64
	for _, b := range pool {
		h := fnv.New64a()
		h.Write([]byte(host))
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(b.ID)))
		if s := h.Sum64(); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
}

// Fair picks the backend expected to answer soonest: its peak-EWMA response
// time times its in-flight requests plus one, as Linkerd and Finagle do.
// This is the "fair" of the original nginx setup's list (shortest response time) that nginx needs a
// third-party module for. A backend with no samples yet costs nothing, so
// new replicas are tried at once.
type Fair struct{}

// Select implements Policy.
func (Fair) Select(pool []*Backend, _ *http.Request) *Backend {
	return minBy(pool, func(b *Backend) float64 {
		return b.latency * float64(b.inflight.Load()+1)
	})
}

var policies = map[string]func() Policy{
	"least_conn":  func() Policy { return LeastConn{} },
	"round_robin": func() Policy { return &RoundRobin{} },
	"weighted":    func() Policy { return Weighted{} },
	"ip_hash":     func() Policy { return IPHash{} },
	"fair":        func() Policy { return Fair{} },
}

// PolicyNames lists the names NewPolicy accepts.
func PolicyNames() []string {
	names := make([]string, 0, len(policies))
	for n := range policies {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewPolicy returns the policy called name.
func NewPolicy(name string) (Policy, error) {
	f, ok := policies[name]
	if !ok {
		return nil, fmt.Errorf("unknown policy %q (choose one of %s)", name, strings.Join(PolicyNames(), ", "))
	}
	return f(), nil
}
