package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
)

// A restart is asked for: of every replica, one at a time (RollingRestart:
// `mattingctl restart`, the dashboard, a reload that changed the
// replicas' settings), or of one (RestartReplica:
// `mattingctl restart --replica K`). Either way a replica gets a new
// process: a running one is replaced successor first (replace.go), a
// failed one, whose loop has ended, is started afresh in a new slot
// (revive). A crash is another thing: the crash policy (crashpolicy.go)
// decides when a crashed process starts again.

// errRestartRunning is returned when a rolling restart is asked for while
// one is under way.
var errRestartRunning = errors.New("a rolling restart is already running")

// ReasonRestart is why a replica restarted alone (`restart --replica K`)
// runs a new process.
const ReasonRestart = "restart"

// RollingRestart replaces every replica's process, one replica at a time:
// each successor is started on a spare port and must be ready before its
// predecessor leaves rotation and drains, so capacity never drops below
// the desired count. A failed replica is started afresh. If a successor (or
// a failed replica) does not become ready the restart stops there, the old
// processes serve on, and the result says why.
func (s *Supervisor) RollingRestart(ctx context.Context) (control.RestartResult, error) {
	// The certificate is re-read first, also when a restart is already
	// running: a renewed certificate should not wait for the replicas.
	certErr := s.reloadCertificate()
	if !s.restartMu.TryLock() {
		return control.RestartResult{}, errRestartRunning
	}
	defer s.restartMu.Unlock()
	s.scaleMu.Lock() // the set of replicas must not change underneath
	defer s.scaleMu.Unlock()
	if s.ctx.Err() != nil {
		return control.RestartResult{}, errStopping
	}
	res := control.RestartResult{Name: s.cfg().Name}
	if certErr != nil {
		res.CertError = certErr.Error()
	}
	slots := s.active()
	s.log.Info("rolling restart", "replicas", len(slots))
	s.event("", admin.EventRolling, "started: %d replicas", len(slots))
	for _, sl := range slots {
		if err := s.restartSlot(ctx, sl, ReasonRolling, &res); err != nil {
			res.Error = err.Error()
			s.log.Error("rolling restart stopped", "replica", sl.name, "error", err)
			s.event(sl.name, admin.EventRolling, "stopped: %v", err)
			return res, nil
		}
	}
	s.log.Info("rolling restart done", "replaced", len(res.Replaced))
	s.event("", admin.EventRolling, "done: %d replaced", len(res.Replaced))
	return res, nil
}

// RestartReplica gives replica id a new process, as one step of a rolling
// restart does: successor first if it is running, afresh if it failed.
func (s *Supervisor) RestartReplica(ctx context.Context, id int) (control.RestartResult, error) {
	if !s.restartMu.TryLock() {
		return control.RestartResult{}, errRestartRunning
	}
	defer s.restartMu.Unlock()
	s.scaleMu.Lock()
	defer s.scaleMu.Unlock()
	s.mu.Lock()
	sl, n := s.slots[id], s.desired
	s.mu.Unlock()
	if s.ctx.Err() != nil {
		return control.RestartResult{}, errStopping
	}
	if sl == nil {
		return control.RestartResult{}, fmt.Errorf("there is no replica-%d: the instance has %d replicas", id, n)
	}
	if st := sl.status().State; st != control.Ready && st != control.Unhealthy && st != control.Failed {
		return control.RestartResult{}, fmt.Errorf("%s is %s: a new process is on its way already", sl.name, st)
	}
	res := control.RestartResult{Name: s.cfg().Name}
	s.log.Info("restarting one replica", "replica", sl.name)
	if err := s.restartSlot(ctx, sl, ReasonRestart, &res); err != nil {
		res.Error = err.Error()
		s.log.Error("restart failed", "replica", sl.name, "error", err)
	}
	return res, nil
}

// restartSlot gives sl a new process for reason and records it in res: a
// ready or unhealthy replica is replaced successor first, a failed one is
// revived. A replica starting or in backoff gets a new process anyway and
// is skipped. It returns an error when the new process did not become
// ready (the old one, if any, serves on).
func (s *Supervisor) restartSlot(ctx context.Context, sl *slot, reason string, res *control.RestartResult) error {
	before := sl.status()
	switch before.State {
	case control.Ready, control.Unhealthy:
		if err := sl.requestReplace(ctx, reason); err != nil {
			return err
		}
		after := sl.status()
		res.Replaced = append(res.Replaced, control.Replacement{
			Name: sl.name, OldPid: before.Pid, NewPid: after.Pid, OldPort: before.Port, NewPort: after.Port,
		})
	case control.Failed:
		ns := s.revive(sl, reason)
		if ns == nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s (%s)", sl.name, before.State))
			return nil
		}
		select {
		case <-ns.firstDone:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (it goes on starting in the background)", sl.name, ctx.Err())
		}
		if err := ns.failure(); err != nil {
			return err
		}
		after := ns.status()
		res.Replaced = append(res.Replaced, control.Replacement{
			Name: sl.name, NewPid: after.Pid, OldPort: before.Port, NewPort: after.Port, Revived: true,
		})
	default:
		res.Skipped = append(res.Skipped, fmt.Sprintf("%s (%s)", sl.name, before.State))
	}
	return nil
}

// A failed replica's loop has ended: it is not retried on its own. A
// rolling restart, `restart --replica K` and `scale` give it a fresh slot
// with the same id, as a new replica, keeping its restart count.

// revive replaces sl, a failed replica, with a fresh slot that starts a
// process at once, for reason. It returns nil when sl is no longer its
// replica's slot (a scale-down removed it) or the instance is stopping.
func (s *Supervisor) revive(sl *slot, reason string) *slot {
	<-sl.done // fail() comes before the loop's clean-up (its ports)
	sl.mu.Lock()
	restarts, lastExit := sl.restarts, sl.lastExit
	sl.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil || s.slots[sl.id] != sl {
		return nil
	}
	ns := newSlot(s, sl.id, reason)
	ns.restarts, ns.lastExit = restarts+1, lastExit
	s.slots[sl.id] = ns
	s.log.Info("starting a failed replica afresh", "replica", sl.name, "reason", reason)
	s.bg.Go(ns.run)
	return ns
}

// reviveFailed starts afresh the failed replicas among the first n, for a
// scale, and returns their new slots.
func (s *Supervisor) reviveFailed(n int) []*slot {
	var revived []*slot
	for _, sl := range s.active() {
		if sl.id > n || sl.status().State != control.Failed {
			continue
		}
		if ns := s.revive(sl, ReasonScale); ns != nil {
			revived = append(revived, ns)
		}
	}
	return revived
}
