package fdbudget

import (
	"fmt"
	"os"
)

// An instance shares its open-file limit out once, at start, in a Budget:
//
//	64 fixed + admin cap + control cap
//	+ (replicas + 1) × (max-inflight + 8)
//	+ client connections (--max-conns), twice over with --max-inflight 0
//	+ upgraded connections (--max-upgraded), with a --max-inflight cap
//
// An upgraded (WebSocket) connection holds two descriptors: its client's,
// counted in --max-conns, and its replica's, which no --max-inflight slot
// bounds once the tunnel is open. With --max-inflight 0 every client
// connection is already counted twice, so upgraded ones cost nothing more.
// Derived caps keep room for more replicas. The caps are then fixed (the
// proxy's listener is sized by them); a scale checks that its replicas
// fit beside them (CheckScale).

// Want is what an instance asks of the open-file limit: its replicas, and
// the caps it was given, zero where one is to be derived.
type Want struct {
	Replicas    int
	MaxInflight int
	// MaxConns and MaxUpgraded are --max-conns and --max-upgraded; zero
	// derives each from what the limit leaves.
	MaxConns    int
	MaxUpgraded int
	// AdminConns and ControlConns cap the connections open at once to the
	// admin listener (0: none, --admin none) and to the control socket.
	AdminConns   int
	ControlConns int
}

// Budget is how an instance shares out its open-file limit: the caps in
// force, and the limit they were planned against.
type Budget struct {
	Limit        uint64
	MaxInflight  int
	MaxConns     int
	MaxUpgraded  int
	AdminConns   int
	ControlConns int
}

// Plan derives the caps that want leaves at zero and checks them all
// against limit. Of what the limit leaves once the replicas asked for are
// provided for, derived caps keep a quarter back as room to scale up
// without a restart (none when the limit is too low for that); of the
// rest, upgraded connections get a quarter and client connections the
// remainder (so upgraded ones take at most a third of --max-conns), at
// most 65536. With --max-inflight 0, client connections get half of it
// (each may hold a replica connection) and the upgraded cap is
// --max-conns. An error names the flag, the limit and the fix.
func Plan(want Want, limit uint64) (Budget, error) {
	if want.MaxConns < 0 {
		return Budget{}, fmt.Errorf("--max-conns must not be negative (0 means the default, from the open-file limit), not %d", want.MaxConns)
	}
	if want.MaxUpgraded < 0 {
		return Budget{}, fmt.Errorf("--max-upgraded must not be negative (0 means the default, from the open-file limit), not %d", want.MaxUpgraded)
	}
	if want.MaxConns == 0 || want.MaxUpgraded == 0 {
		if b, err := plan(want, limit, true); err == nil {
			return b, nil
		}
	}
	return plan(want, limit, false)
}

// roomShare is the share of what the limit leaves that derived caps keep
// back for more replicas: one part in roomShare.
const roomShare = 4

// plan is Plan, keeping room for more replicas or not.
func plan(w Want, limit uint64, keepRoom bool) (Budget, error) {
	b := Budget{Limit: limit, MaxInflight: w.MaxInflight, AdminConns: w.AdminConns, ControlConns: w.ControlConns}
	reserve := b.reserve(w.Replicas)
	left := 0
	if limit > reserve {
		left = int(min(limit-reserve, 1<<40))
	}
	if keepRoom {
		left -= left / roomShare
	}
	kept := fmt.Sprintf("ulimit -n is %d and %d are kept for %d replicas at --max-inflight %d, the control socket and the admin listener",
		limit, reserve, w.Replicas, w.MaxInflight)
	least := max(MinDefault, w.Replicas*w.MaxInflight)
	short := func(fits int) error {
		if fits <= 0 {
			return fmt.Errorf("--max-conns: the open-file limit leaves no client connections (%s); raise ulimit -n (soft and hard), or run fewer replicas or a lower --max-inflight", kept)
		}
		return fmt.Errorf("--max-conns: the open-file limit leaves only %d client connections (%s), fewer than %d; raise ulimit -n (soft and hard), or set --max-conns %d or lower", fits, kept, least, fits)
	}

	if w.MaxInflight == 0 {
		// Every client connection may hold a replica connection, upgraded
		// or not: each counts twice, and upgraded ones cost nothing more.
		fits := left / 2
		switch {
		case w.MaxConns > fits:
			return Budget{}, fmt.Errorf("--max-conns %d does not fit the open-file limit: %s, and with --max-inflight 0 each client connection may hold a replica connection; set --max-conns to at most %d, or raise ulimit -n", w.MaxConns, kept, fits)
		case w.MaxConns > 0:
			b.MaxConns = w.MaxConns
		case fits < least:
			return Budget{}, short(fits)
		default:
			b.MaxConns = min(fits, maxDefault)
		}
		b.MaxUpgraded = w.MaxUpgraded
		if b.MaxUpgraded == 0 {
			b.MaxUpgraded = b.MaxConns
		}
		return b, nil
	}

	switch conns, up := w.MaxConns, w.MaxUpgraded; {
	case conns > 0 && up > 0:
		if conns+up > left {
			return Budget{}, fmt.Errorf("--max-conns %d and --max-upgraded %d do not fit the open-file limit: %s, and each upgraded connection holds a replica connection too; keep their sum at most %d, or raise ulimit -n", conns, up, kept, left)
		}
		b.MaxConns, b.MaxUpgraded = conns, up
	case conns > 0:
		if conns >= left {
			return Budget{}, fmt.Errorf("--max-conns %d does not fit the open-file limit: %s, and --max-upgraded needs at least one; set --max-conns to at most %d, or raise ulimit -n", conns, kept, max(left-1, 0))
		}
		b.MaxConns, b.MaxUpgraded = conns, min(max(conns/3, 1), left-conns)
	case up > 0:
		if left-up < least {
			return Budget{}, fmt.Errorf("--max-upgraded %d leaves only %d client connections (%s, and each upgraded connection holds a replica connection too), fewer than %d; lower --max-upgraded, or raise ulimit -n", up, max(left-up, 0), kept, least)
		}
		b.MaxConns, b.MaxUpgraded = min(left-up, maxDefault), up
	default:
		up := left / 4
		if left-up < least {
			return Budget{}, short(left - up)
		}
		b.MaxConns = min(left-up, maxDefault)
		b.MaxUpgraded = min(up, max(b.MaxConns/3, 1))
	}
	return b, nil
}

// reserve is what the budget keeps from connections with replicas
// running: the fixed part, the admin and control caps, and each replica
// and a successor (Reserve).
func (b Budget) reserve(replicas int) uint64 {
	return uint64(b.AdminConns+b.ControlConns) + uint64(Reserve(replicas, b.MaxInflight))
}

// conns is what the connection caps may hold.
func (b Budget) conns() uint64 {
	if b.MaxInflight == 0 {
		return 2 * uint64(b.MaxConns)
	}
	return uint64(b.MaxConns) + uint64(b.MaxUpgraded)
}

// Need is how many descriptors the instance may hold with replicas
// running, every cap full.
func (b Budget) Need(replicas int) uint64 { return b.reserve(replicas) + b.conns() }

// MaxReplicas is the most replicas that fit the limit beside the caps.
func (b Budget) MaxReplicas() int {
	base := b.reserve(0) + b.conns() // with one replica's room: a successor
	if b.Limit < base {
		return 0
	}
	per := uint64(b.MaxInflight + reservePerReplica)
	return int(min((b.Limit-base)/per, 1<<30))
}

// CheckScale returns nil when replicas fit the limit beside the caps, or
// one line saying what it needs, what fits, and how to raise the limit:
// prlimit on the running instance, or ulimit -n / LimitNOFILE= for the
// next start.
func (b Budget) CheckScale(replicas int) error {
	need := b.Need(replicas)
	if need <= b.Limit {
		return nil
	}
	fits := "no more replicas fit"
	if n := b.MaxReplicas(); n > 0 {
		fits = fmt.Sprintf("enough for %d", n)
	}
	return fmt.Errorf("cannot scale to %d: that needs %d file descriptors (%d replicas at --max-inflight %d, --max-conns %d, --max-upgraded %d, the admin listener and the control socket) and ulimit -n is %d, %s; "+
		"raise the limit (now: prlimit --pid %d --nofile=%d:%d; for the next start: ulimit -n, or LimitNOFILE= in a systemd unit), or restart with a lower --max-conns",
		replicas, need, replicas, b.MaxInflight, b.MaxConns, b.MaxUpgraded, b.Limit, fits, os.Getpid(), need, need)
}
