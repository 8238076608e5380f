package supervisor

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/mattingctl/mattingctl/internal/pidbudget"
)

// Every process and thread is a task against the pids limits that apply
// (a systemd unit's TasksMax, a container's pids limit, RLIMIT_NPROC). A
// scale past them would fail at fork, and a Go program that cannot create
// the thread it needs aborts, taking every replica along: so a scale that
// does not fit is refused, naming the limit.

// tasksPerReplica returns how many tasks a running replica takes, with
// what it forked: the most any running replica takes now, since one that
// has served takes more than one just started. It returns 1 and false when
// none runs to be measured.
func (s *Supervisor) tasksPerReplica() (int64, bool) {
	most := 0
	for _, sl := range s.snapshot() {
		if pid := sl.runningPid(); pid > 0 {
			most = max(most, s.usage.Sample(pid).Tasks)
		}
	}
	if most == 0 {
		return 1, false
	}
	return int64(most), true
}

// checkTasks returns an error if growing from the replicas running to n
// would pass a pids limit, with each new replica taking per tasks.
func checkTasks(limits []pidbudget.Limit, running, n int, per int64, measured bool) error {
	if err := pidbudget.Check(limits, running, n, per, measured); err != nil {
		return fmt.Errorf("cannot scale to %d: %w", n, err)
	}
	return nil
}

// prepareTasks refuses an `up` whose replicas cannot all start under the
// pids limits, each counted as one task, the least it can take. Where a
// limit applies it also has mattingctl take its own threads now
// (pidbudget.HoldThreads), so that replicas that fill the limit later
// cannot leave it without a thread it needs.
func (s *Supervisor) prepareTasks() error {
	limits := pidbudget.Limits()
	if len(limits) == 0 {
		return nil
	}
	if err := pidbudget.Check(limits, 0, s.cfg().Replicas, 1, false); err != nil {
		return fmt.Errorf("--replicas %d: %w", s.cfg().Replicas, err)
	}
	pidbudget.HoldThreads(pidbudget.HeldThreads())
	l, _ := pidbudget.Tightest(limits)
	s.log.Info("a pids limit applies; scales that would pass it are refused", "limit", l.Name, "max", l.Max, "in_use", l.Used)
	return nil
}

// explainTaskLimit adds to a start error that is fork's EAGAIN (no task
// left under a pids limit, or RLIMIT_NPROC) which limit is full.
func explainTaskLimit(err error) error {
	if !errors.Is(err, syscall.EAGAIN) {
		return err
	}
	l, ok := pidbudget.Tightest(pidbudget.Limits())
	if !ok {
		return err
	}
	return fmt.Errorf("%w (the %s allows %d tasks and %d are in use; raise it: %s)", err, l.Name, l.Max, l.Used, l.Raise)
}

// starvedStart is the start error of a replica that failed to become ready
// while a pids limit refused forks: it wraps EAGAIN, as a fork refused, so
// that it is retried as a transient start error.
func starvedStart(err error) error {
	why := "a pids limit"
	if l, ok := pidbudget.Tightest(pidbudget.Limits()); ok {
		why = fmt.Sprintf("the %s (%d of %d tasks in use; raise it: %s)", l.Name, l.Used, l.Max, l.Raise)
	}
	return fmt.Errorf("%w, while %s refused to fork its threads or processes: %w", err, why, syscall.EAGAIN)
}
