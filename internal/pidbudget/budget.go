// Package pidbudget reads the limits on how many tasks (processes and
// threads, as the kernel counts them) mattingctl and its replicas may run,
// and decides whether more replicas fit them, so that a scale past a
// cgroup's pids.max is refused rather than left to fail at fork, or at
// mattingctl's own next thread, which the Go runtime cannot survive.
package pidbudget

import "fmt"

// Limit is one limit on tasks that applies to mattingctl and its replicas,
// and how much of it is in use.
type Limit struct {
	// Name says which limit this is, as a user would look for it: "cgroup
	// /system.slice/x.service pids.max" or "RLIMIT_NPROC (ulimit -u) of
	// uid 1000".
	Name string
	// Max is the most tasks the limit allows; Used is how many count
	// against it now.
	Max, Used int64
	// Raise says how to raise it.
	Raise string
}

// Free is how many more tasks the limit allows; never negative.
func (l Limit) Free() int64 { return max(l.Max-l.Used, 0) }

// Tightest returns the limit with the fewest tasks free, and false when no
// limit applies.
func Tightest(limits []Limit) (Limit, bool) {
	if len(limits) == 0 {
		return Limit{}, false
	}
	best := limits[0]
	for _, l := range limits[1:] {
		if l.Free() < best.Free() {
			best = l
		}
	}
	return best, true
}

// Spare is how many tasks are kept free beyond what mattingctl and the
// replicas hold when a scale is checked: for threads mattingctl needs past
// those it holds (HoldThreads), and for replicas that start threads after
// they are ready. Running out of threads aborts a Go program, and every
// replica with it.
const Spare = 8

// Room is how many replicas more than running fit limit l when each takes
// perReplica tasks: what is free once Spare is kept and one replica's
// worth for a successor during a rolling restart or a recycle.
func Room(l Limit, perReplica int64) int64 {
	perReplica = max(perReplica, 1)
	return max((l.Free()-Spare)/perReplica-1, 0)
}

// Check returns nil if growing from running replicas to target fits every
// limit, each new replica taking perReplica tasks (at least one), and
// otherwise an error that names the tightest limit, what is in use, what
// would fit and how to raise it. measured says perReplica is what the
// largest running replica takes, rather than a guess.
func Check(limits []Limit, running, target int, perReplica int64, measured bool) error {
	add := int64(target - running)
	if add <= 0 {
		return nil
	}
	perReplica = max(perReplica, 1)
	l, ok := Tightest(limits)
	if !ok {
		return nil
	}
	room := Room(l, perReplica)
	if add <= room {
		return nil
	}
	each := fmt.Sprintf("%d each, as the largest running one takes", perReplica)
	if !measured {
		each = fmt.Sprintf("at least %d each", perReplica)
	}
	more := fmt.Sprintf("%d more replicas take", add)
	if add == 1 {
		more = "1 more replica takes"
	}
	fit := "room for none"
	if room > 0 {
		fit = fmt.Sprintf("room for %d more (at most %d replicas)", room, int64(running)+room)
	}
	return fmt.Errorf("the %s allows %d tasks and %d are in use: %s about %d (%s), and %d are kept spare for mattingctl and one replica's successor; %s; raise the limit (%s)",
		l.Name, l.Max, l.Used, more, add*perReplica, each, Spare+perReplica, fit, l.Raise)
}
