package supervisor

import (
	"fmt"
	"time"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
)

// Liveness: once a replica is ready, its slot's serve loop checks it every
// HealthInterval with the readiness check (GET Health, the gRPC health
// check with --health grpc, or a TCP connect), bounded by HealthTimeout,
// as a Kubernetes liveness probe does. After
// UnhealthyAfter failures in a row the replica leaves rotation, `unhealthy`;
// one passing check brings it back. Unhealthy for RestartUnhealthyAfter, its
// process group is killed and it is restarted through the crash path: the
// requests it held get no response, so the proxy sends them to another
// replica (once).
//
// Without --health the check is a TCP connect, which the kernel completes
// from the listen backlog even for a stopped or hung process: only --health
// detects a replica that accepts connections but never answers.

// ReasonUnhealthy is why a replica that stayed unhealthy was restarted.
const ReasonUnhealthy = "unhealthy"

// Slow requests: a warning, at most once a minute per replica, while one of
// its requests has been in flight for more than slowFactor times its p99
// response time (the balancer's estimate over the last 30 to 60 s, from a
// log-scale histogram, at least 20 responses), and at least slowFloor, so
// that a fast replica's ordinary pauses (a GC, a page fault) stay quiet.
const (
	slowFactor    = 10
	slowFloor     = time.Second
	slowWarnEvery = time.Minute
)

// checkLiveness validates the liveness options.
func (o HealthOptions) checkLiveness() error {
	switch {
	case o.HealthInterval < 0:
		return fmt.Errorf("--health-interval must not be negative (0 turns liveness checks off), not %s", o.HealthInterval)
	case o.HealthTimeout < 0:
		return fmt.Errorf("--health-timeout must not be negative, not %s", o.HealthTimeout)
	case o.UnhealthyAfter < 0:
		return fmt.Errorf("--unhealthy-after must not be negative, not %d", o.UnhealthyAfter)
	case o.RestartUnhealthyAfter < 0:
		return fmt.Errorf("--restart-unhealthy-after must not be negative (0 restarts at once), not %s", o.RestartUnhealthyAfter)
	case o.HealthInterval == 0:
		return nil
	case o.HealthTimeout == 0:
		return fmt.Errorf("--health-timeout must be positive while --health-interval is set (%s)", o.HealthInterval)
	case o.UnhealthyAfter == 0:
		return fmt.Errorf("--unhealthy-after must be at least 1 while --health-interval is set (%s)", o.HealthInterval)
	}
	return nil
}

// liveness is what a serve loop knows of its process's liveness checks.
// Only that loop touches it. A check starts every HealthInterval, whether
// or not the one before has ended, as "every interval" says: when the
// timeout is longer than the interval (1s and 2s), a hung replica is found
// after interval + timeout + (UnhealthyAfter-1) intervals, not after
// UnhealthyAfter timeouts. Each check runs in a goroutine of its own that
// only calls Probe.Check, bounded by the timeout and the slot's ctx, and
// hands the outcome to the loop through results, which has room for every
// check in flight, so that the goroutine never blocks, even once the loop
// has moved on.
type liveness struct {
	failures  int  // checks failed in a row
	unhealthy bool // out of rotation until a check passes
	// restart fires once the replica has been unhealthy for
	// RestartUnhealthyAfter; nil while it is healthy.
	restart  *time.Timer
	results  chan error // outcomes of the checks in flight
	inFlight int        // checks started whose outcome is not yet read
	skipping bool       // the last check could not run (mattingctl out of descriptors)
	answered uint64     // requests the replica had answered at the last check (busy.go)
}

// newLiveness returns the liveness of a new process under c.
func newLiveness(c *config) liveness {
	opts := c.HealthOptions
	n := 1
	if opts.HealthInterval > 0 {
		// Checks start every interval and end within the timeout.
		n = int(opts.HealthTimeout/opts.HealthInterval) + 2
	}
	return liveness{results: make(chan error, n)}
}

// A change in a replica's liveness.
type livenessChange int

const (
	livenessSame livenessChange = iota
	becameUnhealthy
	becameHealthy
)

// record folds in one check's outcome: the after-th failure in a row makes
// the replica unhealthy, a success makes it healthy.
func (lv *liveness) record(err error, after int) livenessChange {
	if err == nil {
		lv.failures = 0
		if lv.unhealthy {
			lv.unhealthy = false
			return becameHealthy
		}
		return livenessSame
	}
	lv.failures++
	if !lv.unhealthy && lv.failures >= after {
		lv.unhealthy = true
		return becameUnhealthy
	}
	return livenessSame
}

// restartDue is the channel the serve loop waits on for the restart of an
// unhealthy replica; nil (never ready) while it is healthy.
func (lv *liveness) restartDue() <-chan time.Time {
	if lv.restart == nil {
		return nil
	}
	return lv.restart.C
}

// reset forgets the checks, for a new process or the end of the loop.
// Checks still in flight deliver into the old results, which has room.
func (lv *liveness) reset() {
	if lv.restart != nil {
		lv.restart.Stop()
	}
	*lv = liveness{results: make(chan error, cap(lv.results))}
}

// startCheck starts a liveness check of inc, unless as many are in flight
// as results has room for (they run late: the timeout is being exceeded).
func (s *slot) startCheck(inc *incarnation, lv *liveness) {
	if lv.inFlight == cap(lv.results) {
		return
	}
	lv.inFlight++
	probe := inc.probe // the path in force at its start
	probe.Timeout = s.sup.cfg().HealthTimeout
	results, ctx := lv.results, s.ctx
	// run waits for the check before the slot is done; the stop cuts it
	// short (ctx).
	s.checks.Go(func() { results <- probe.Check(ctx) })
}

// checked takes the outcome err of a liveness check of inc and takes inc
// out of rotation or puts it back as it requires. A check that could not
// run for want of mattingctl's own resources (no file descriptor for the
// socket) says nothing about the replica and is not counted.
func (s *slot) checked(inc *incarnation, lv *liveness, err error) {
	lv.inFlight--
	select {
	case <-inc.proc.Done():
		return // the crash path takes over
	default:
	}
	if s.stopping() {
		return // the check was cut short; the loop stops the replica
	}
	if err != nil && transientStartError(err) {
		if !lv.skipping { // once per run of them
			s.log.Warn("liveness check could not run; not counted", "error", err)
		}
		lv.skipping = true
		return
	}
	lv.skipping = false
	if lv.answering(inc.be) && err != nil {
		// Busy, not hung: its health endpoint waits behind its requests.
		s.log.Debug("liveness check failed while the replica answers requests; not counted", "pid", inc.proc.Pid(), "error", err)
		err = nil
	}
	inc.checkFailed.Store(err != nil)
	change := lv.record(err, s.sup.cfg().UnhealthyAfter)
	s.mu.Lock()
	s.healthErr = ""
	if err != nil {
		s.healthErr = err.Error()
	}
	s.mu.Unlock()
	switch {
	case change == becameUnhealthy:
		s.log.Warn("replica failed its liveness checks; out of rotation until one passes",
			"pid", inc.proc.Pid(), "failures", lv.failures, "error", err, "restart_in", s.sup.cfg().RestartUnhealthyAfter)
		s.sup.event(s.name, admin.EventUnhealthy, "%d liveness checks failed: %v; restarting in %s unless one passes", lv.failures, err, s.sup.cfg().RestartUnhealthyAfter)
		s.sup.bal.Remove(inc.be)
		s.set(control.Unhealthy)
		lv.restart = time.NewTimer(s.sup.cfg().RestartUnhealthyAfter)
	case change == becameHealthy:
		s.log.Info("replica passed a liveness check; back in rotation", "pid", inc.proc.Pid())
		s.sup.event(s.name, admin.EventHealthy, "passed a liveness check; back in rotation")
		lv.restart.Stop()
		lv.restart = nil
		// The serve loop puts it back into rotation.
	case err != nil && !lv.unhealthy: // once unhealthy, the failures go without saying
		s.log.Warn("liveness check failed", "pid", inc.proc.Pid(), "failures", lv.failures, "of", s.sup.cfg().UnhealthyAfter, "error", err)
	}
}

// warnSlow logs, at most once per slowWarnEvery for the replica, that one
// of inc's requests has been in flight for over slowFactor times its p99.
func (s *slot) warnSlow(inc *incarnation) {
	oldest := inc.be.OldestInflight()
	if oldest < slowFloor || time.Since(s.slowWarnedAt) < slowWarnEvery {
		return
	}
	p99, ok := s.sup.bal.LatencyP99(inc.be)
	if !ok || oldest <= slowFactor*p99 {
		return
	}
	s.slowWarnedAt = time.Now()
	s.log.Warn(fmt.Sprintf("a request has been in flight for over %d times the replica's p99", slowFactor),
		"pid", inc.proc.Pid(), "oldest", oldest.Round(time.Millisecond), "p99", p99, "inflight", inc.be.InFlight())
}

// clearHealthErr forgets the last liveness failure, for a new process.
func (s *slot) clearHealthErr() {
	s.mu.Lock()
	s.healthErr = ""
	s.mu.Unlock()
}
