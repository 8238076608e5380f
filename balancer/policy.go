package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
)

// Policy chooses the backend for a request. Select is called with the
// balancer's lock held, so it must be quick and must not block; pool is
// never empty and holds only backends that may take the request. Returning
// nil means none is suitable, which the proxy answers with 503.
type Policy interface {
	Select(pool []*Backend, r *http.Request) *Backend
}

var (
	_ Policy = LeastConn{}
	_ Policy = (*RoundRobin)(nil)
)

// LeastConn picks the backend with the fewest in-flight requests (requests,
// not TCP connections: a keep-alive connection between requests is free).
// Ties are broken uniformly at random, so equal backends share load evenly.
type LeastConn struct{}

// Select implements Policy.
func (LeastConn) Select(pool []*Backend, _ *http.Request) *Backend {
	var best *Backend
	var min int64
	ties := 0
	for _, b := range pool {
		n := b.inflight.Load()
		switch {
		case best == nil || n < min:
			best, min, ties = b, n, 1
		case n == min:
			// Reservoir sampling: the k-th tie replaces best with
			// probability 1/k, so each tie ends up chosen with 1/ties.
			ties++
			if rand.IntN(ties) == 0 {
				best = b
			}
		}
	}
	return best
}

// RoundRobin picks the backends in turn.
type RoundRobin struct {
	next atomic.Uint64
}

// Select implements Policy.
func (p *RoundRobin) Select(pool []*Backend, _ *http.Request) *Backend {
	n := p.next.Add(1) - 1
	return pool[n%uint64(len(pool))]
}

var policies = map[string]func() Policy{
	"least_conn":  func() Policy { return LeastConn{} },
	"round_robin": func() Policy { return &RoundRobin{} },
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
