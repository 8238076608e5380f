// Package pidbudget reads the limits on how many tasks (processes and
// threads, as the kernel counts them) mattingctl and its replicas may run,
// and decides whether more replicas fit them, so that a scale past a
// cgroup's pids.max is refused rather than left to fail at fork, or at
// mattingctl's own next thread, which the Go runtime cannot survive.
package pidbudget

import (
	"fmt"
	"runtime"
)

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

// ownSpare is how many tasks beyond GOMAXPROCS are kept free for
// mattingctl's own threads: the runtime's monitor and template threads,
// threads blocked in file writes and /proc reads, and the race detector's.
const ownSpare = 16

// Spare is how many tasks are kept free for mattingctl itself, beyond
// what the replicas take: a thread per GOMAXPROCS that its work may keep
// busy at once, plus ownSpare. Running out of threads aborts a Go program,
// and every replica with it.
func Spare() int64 { return int64(runtime.GOMAXPROCS(0)) + ownSpare }

// Room is how many replicas more than running fit limit l when each takes
// perReplica tasks: what is free once Spare is kept for mattingctl and one
// replica's worth for a successor during a rolling restart or a recycle.
func Room(l Limit, perReplica int64) int64 {
	perReplica = max(perReplica, 1)
	return max((l.Free()-Spare())/perReplica-1, 0)
}

// Check returns nil if add more replicas, each taking perReplica tasks
// (at least one), fit every limit, and otherwise an error that names the
// tightest limit, what is in use, what would fit and how to raise it.
// target is the replica count asked for, running the replicas already
// there, for the message.
func Check(limits []Limit, running, target int, perReplica int64) error {
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
	fit := "no more replicas fit"
	if room > 0 {
		fit = fmt.Sprintf("%d more fit (at most %d replicas)", room, int64(running)+room)
	}
	return fmt.Errorf("%d replicas need more tasks than the %s allows: %d of %d are in use, %d more replicas take about %d (%d each) and %d are kept for mattingctl's own threads and one replica's successor; %s; raise the limit (%s)",
		target, l.Name, l.Used, l.Max, add, add*perReplica, perReplica, Spare()+perReplica, fit, l.Raise)
}
