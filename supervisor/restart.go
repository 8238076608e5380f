package supervisor

import (
	"context"
	"errors"
	"fmt"
)

// RestartResult is what a rolling restart did.
type RestartResult struct {
	Name string `json:"name"`
	// Replaced lists, in order, the replicas that now run a new process.
	Replaced []Replacement `json:"replaced"`
	// Skipped lists replicas that were not running (failed, in backoff).
	Skipped []string `json:"skipped,omitempty"`
	// Error says where the restart stopped, if it did.
	Error string `json:"error,omitempty"`
}

// Replacement is one replica's swap in a rolling restart.
type Replacement struct {
	Name    string `json:"name"`
	OldPid  int    `json:"old_pid"`
	NewPid  int    `json:"new_pid"`
	OldPort int    `json:"old_port"`
	NewPort int    `json:"new_port"`
}

// ErrRestartRunning is returned when a rolling restart is asked for while
// one is under way.
var ErrRestartRunning = errors.New("a rolling restart is already running")

// RollingRestart replaces every replica's process, one replica at a time:
// each successor is started on a spare port and must be ready before its
// predecessor leaves rotation and drains, so capacity never drops below
// the desired count. If a successor does not become ready the restart stops
// there, the old processes serve on, and the result says why.
func (s *Supervisor) RollingRestart(ctx context.Context) (RestartResult, error) {
	if !s.restartMu.TryLock() {
		return RestartResult{}, ErrRestartRunning
	}
	defer s.restartMu.Unlock()
	s.scaleMu.Lock() // the set of replicas must not change underneath
	defer s.scaleMu.Unlock()
	res := RestartResult{Name: s.opts.Name}
	slots := s.snapshot()
	s.log.Info("rolling restart", "replicas", len(slots))
	for _, sl := range slots {
		before := sl.status()
		if before.State != string(Ready) {
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s (%s)", sl.name, before.State))
			continue
		}
		if err := sl.requestReplace(ctx, ReasonRolling); err != nil {
			res.Error = err.Error()
			s.log.Error("rolling restart stopped", "replica", sl.name, "error", err)
			return res, nil
		}
		after := sl.status()
		res.Replaced = append(res.Replaced, Replacement{
			Name: sl.name, OldPid: before.Pid, NewPid: after.Pid, OldPort: before.Port, NewPort: after.Port,
		})
	}
	s.log.Info("rolling restart done", "replaced", len(res.Replaced))
	return res, nil
}
