package supervisor

import (
	"os"

	"github.com/mattingctl/mattingctl/replica"
)

// startReaper starts the instance's reaper (Options.Reaper), which kills
// what the replicas left running if the supervisor dies without stopping
// them. Without one the instance runs on, with a warning saying what a
// kill -9 would then leave; nil is a Reaper whose Stop does nothing.
func (s *Supervisor) startReaper(tracker *replica.Tracker) *replica.Reaper {
	if s.cfg().Reaper == "" {
		return nil
	}
	// The reaper logs to the process's own stderr, which outlives the
	// supervisor (a terminal, the journal, `up -d`'s log file), not through
	// the supervisor's queue, which dies with it.
	rp, err := replica.StartReaper([]string{s.cfg().Reaper}, tracker, os.Stderr, s.log.Named("reaper"))
	if err != nil {
		s.log.Warn("no reaper: if mattingctl is killed with SIGKILL, what the replicas forked runs on until the next up of this name", "error", err)
		return nil
	}
	return rp
}
