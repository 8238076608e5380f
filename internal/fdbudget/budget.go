// Package fdbudget shares out the open-file limit: how many client and
// upgraded connections the proxy may hold open at once, once descriptors
// are kept for the replicas, the control socket and the admin listener,
// and whether a scale fits beside them.
package fdbudget

import "fmt"

// The file descriptors kept back from client connections (see Reserve).
const (
	// reserveFixed covers what does not grow with the replicas:
	// stdin/out/err, the Go runtime's poller, the proxy, admin and control
	// listeners, the log and access log files and /proc reads for CPU and
	// memory. For a balancer on its own (MaxConns) it covers a few admin
	// and control connections too; an instance budgets their caps apart
	// (Plan).
	reserveFixed = 64
	// reservePerReplica covers a replica's own descriptors besides its
	// connections for requests: its stdout and stderr pipes (four, and
	// /dev/null, while it starts), its readiness or health probe, and a
	// connection being closed or retried.
	reservePerReplica = 8
	// maxDefault caps the derived --max-conns when the open-file limit is
	// very high (systemd's hard limit is 524288, some container runtimes
	// give 2^20 or more): each open connection costs memory too, about
	// 7 KiB idle (go run ./bench -scenario idleconns: 20,000 took 142 MB),
	// so the cap keeps the default's idle connections under half a GiB.
	maxDefault = 65536
	// MinDefault is the least the derived value may come to.
	MinDefault = 64
	// fallbackFileLimit stands in for the open-file limit where it cannot
	// be read: the Linux hard limit's historical default, a budget any
	// system mattingctl runs on allows.
	fallbackFileLimit = 4096
)

// Reserve is how many file descriptors are kept back from client
// connections for replicas running at maxInflight requests each:
//
//	64 + (replicas + 1) * (max-inflight + 8)
//
// The replica count is one more than asked for: during a rolling restart
// or a recycle, a replica's successor runs next to it. Each replica holds
// up to max-inflight connections for requests, plus reservePerReplica.
// With max-inflight 0 (no cap) a replica may hold as many connections as
// there are clients, so MaxConns halves what is left instead.
func Reserve(replicas, maxInflight int) int {
	return reserveFixed + (replicas+1)*(maxInflight+reservePerReplica)
}

// MaxConns checks want (the --max-conns asked for; 0: derived) against the
// open-file limit and returns the value to use, for a balancer on its own:
// with no admin listener or control socket besides the fixed reserve and
// no cap on upgraded connections. An instance plans all of its caps
// together instead (Plan). The derived value is limit
// minus Reserve, halved when max-inflight is 0 since each client connection
// may then hold a replica connection too, and at most 65536. A derived
// value under max(64, replicas*max-inflight) is an error: fewer client
// connections than the replicas can serve at once would leave them idle.
// An explicit want above what the limit allows is an error too: it would
// let the clients take the descriptors needed to restart a replica or
// answer `status`.
func MaxConns(want int, limit uint64, replicas, maxInflight int) (int, error) {
	if want < 0 {
		return 0, fmt.Errorf("--max-conns must not be negative (0 means the default, from the open-file limit), not %d", want)
	}
	reserve := Reserve(replicas, maxInflight)
	fits := 0
	if limit > uint64(reserve) {
		fits = int(min(limit-uint64(reserve), 1<<40))
	}
	if maxInflight == 0 {
		fits /= 2
	}
	kept := fmt.Sprintf("ulimit -n is %d and %d are kept for %d replicas at --max-inflight %d, the control socket and the admin listener",
		limit, reserve, replicas, maxInflight)
	if want > 0 {
		if want > fits {
			return 0, fmt.Errorf("--max-conns %d does not fit the open-file limit: %s; set --max-conns to at most %d, or raise ulimit -n", want, kept, fits)
		}
		return want, nil
	}
	least := max(MinDefault, replicas*maxInflight)
	switch {
	case fits == 0:
		return 0, fmt.Errorf("--max-conns: the open-file limit leaves no client connections (%s); raise ulimit -n (soft and hard), or run fewer replicas or a lower --max-inflight", kept)
	case fits < least:
		return 0, fmt.Errorf("--max-conns: the open-file limit leaves only %d client connections (%s), fewer than %d; raise ulimit -n (soft and hard), or set --max-conns %d or lower", fits, kept, least, fits)
	}
	return min(fits, maxDefault), nil
}
