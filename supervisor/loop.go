package supervisor

import (
	"time"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
)

// run is the slot's loop: start, serve, and on a crash back off and start
// again, until a stop is requested or the replica fails for good. After
// each try it asks the crash policy (crashpolicy.go) what to do, and does
// it.
func (s *slot) run() {
	defer close(s.done)
	defer s.checks.Wait() // after release, which cuts them short
	defer s.release()
	defer s.markFirstDone()
	defer s.sup.releasePorts(s)
	policy := newCrashPolicy(s.name, s.backoff, s.sup.cfg().ReadyTimeout, time.Now())
	for {
		inc, o, stopped := s.try()
		if stopped || !s.follow(policy.decide(o), o, inc) {
			return
		}
	}
}

// try starts the slot's process and serves with it until it exits. It
// returns the process (nil when none started) and how the try ended;
// stopped is true when a stop came while it served, and was done.
func (s *slot) try() (_ *incarnation, _ outcome, stopped bool) {
	port := s.sup.portFor(s, s.port())
	inc, err := s.startPrimary(port)
	o := outcome{kind: startFailed, err: err, port: port}
	switch {
	case inc == nil:
	case err != nil:
		o.kind = notReady
	default:
		if inc, stopped = s.serve(inc); stopped {
			return inc, outcome{}, true
		}
		o.kind = exited
	}
	o.at, o.stopping = time.Now(), s.stopping()
	if inc != nil {
		o.exit, o.uptime = inc.proc.Exit().String(), time.Since(inc.proc.StartedAt())
	}
	return inc, o, false
}

// follow does what verdict v on outcome o says, for inc, the try's process
// (nil when none started), and reports whether the slot starts another.
func (s *slot) follow(v verdict, o outcome, inc *incarnation) bool {
	if v.crash {
		s.buryCrashed(inc, o)
	}
	switch {
	case v.kind == stopped && inc != nil:
		s.stopProcess(s.force, inc.proc, s.stopCause())
		return false
	case v.kind == stopped:
		s.set(control.Stopped)
		return false
	case v.kind == giveUp:
		s.fail(v.err)
		return false
	case !v.crash: // a start error that may pass
		return s.retryStart(o.err, v.delay)
	default:
		return s.backOff(inc, o, v.delay)
	}
}

// buryCrashed records the end of inc, a crashed process, or one that did
// not become ready again after the replica had served.
func (s *slot) buryCrashed(inc *incarnation, o outcome) {
	if o.kind == notReady {
		s.log.Warn("replica did not become ready", "pid", inc.proc.Pid(), "error", o.err)
	}
	// What the crashed process forked must not outlive it: it could hold
	// the port, or even answer the successor's readiness probe.
	_ = inc.proc.Kill()
	s.retire(inc)
	s.mu.Lock()
	s.lastExit = o.exit
	s.mu.Unlock()
}

// backOff counts inc's crash among the replica's restarts and waits delay
// before the next start. It returns false when the slot must stop instead.
func (s *slot) backOff(inc *incarnation, o outcome, delay time.Duration) bool {
	reason, metric := "crash: "+o.exit, "crash"
	if inc.killedFor != "" {
		reason, metric = inc.killedFor, inc.killedFor
	}
	s.log.Warn("replica exited; restarting", "pid", inc.proc.Pid(), "exit", o.exit, "reason", reason, "uptime", o.uptime.Round(time.Millisecond), "restart_in", delay)
	s.sup.event(s.name, admin.EventCrash, "pid %d: %s, after %s up; restarting in %s", inc.proc.Pid(), reason, o.uptime.Round(time.Second), delay)
	s.mu.Lock()
	s.state = control.Backoff
	s.restarts++
	s.lastRestart = reason
	s.mu.Unlock()
	s.sup.stateChanged()
	s.sup.metrics.Restarted(s.name, metric)
	return s.sleep(delay)
}

// retryStart waits, after a start error that may pass, for delay before
// the next try. It returns false when the slot must stop instead.
func (s *slot) retryStart(err error, delay time.Duration) bool {
	s.log.Warn("replica could not be started; retrying", "error", err, "retry_in", delay)
	s.mu.Lock()
	s.state, s.err = control.Backoff, err
	s.mu.Unlock()
	s.sup.stateChanged()
	return s.sleep(delay)
}

// sleep waits d before the next start, or until a stop is requested: then
// the slot is stopped and it returns false.
func (s *slot) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		s.set(control.Stopped)
		return false
	}
}
