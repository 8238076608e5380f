package supervisor

import (
	"context"
	"errors"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
)

// errRestartRunning is returned when a rolling restart is asked for while
// one is under way.
var errRestartRunning = errors.New("a rolling restart is already running")

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
	res := control.RestartResult{Name: s.opts.Name}
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
