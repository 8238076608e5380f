package supervisor

import (
	"context"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

const (
	// recycleInterval is how often a replica's request count and memory
	// are compared with --max-requests and --max-memory.
	recycleInterval = 2 * time.Second
	// recycleRetry is how long a replica whose successor failed to start
	// serves on before recycling is tried again.
	recycleRetry = 30 * time.Second
)

// serve keeps a ready replica in rotation until its process exits (it is
// returned, for the crash path) or a stop is requested and done (stopped).
// When the proxy reports that the replica failed a request it is out of
// rotation until a readiness check passes. Liveness checks (liveness.go)
// take it out of rotation while it fails them and kill it, for the crash
// path, when it stays unhealthy. Replacements, asked for or due to
// recycling, swap in a successor and go on serving with it.
func (s *slot) serve(inc *incarnation) (_ *incarnation, stopped bool) {
	s.log.Info("replica ready", "pid", inc.proc.Pid(), "port", inc.port)
	s.sup.event(s.name, admin.EventReady, "pid %d, port %d", inc.proc.Pid(), inc.port)
	recycle := time.NewTicker(recycleInterval)
	defer recycle.Stop()
	var health <-chan time.Time // nil: liveness checks are off
	if d := s.sup.cfg().HealthInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		health = t.C
	}
	lv := newLiveness(s.sup.cfg())
	defer lv.reset()
	var recycleAfter time.Time // no recycling before this, after a failed one
	for {
		if s.stopping() { // a stop came while a successor was started
			s.finish(inc)
			return inc, true
		}
		select {
		case <-inc.be.Failed():
			// The proxy took it out of rotation while we were busy
			// (replacing or recycling it): check it before it serves again.
			if done, stopped := s.recheck(inc); done {
				return inc, stopped
			}
		default:
		}
		if !lv.unhealthy {
			s.sup.bal.Add(inc.be)
			s.set(control.Ready)
			s.markFirstDone()
		}
	wait:
		select {
		case <-inc.proc.Done():
			s.sup.bal.Remove(inc.be)
			return inc, false
		case <-s.ctx.Done():
			s.finish(inc)
			return inc, true
		case <-inc.be.Failed():
			if done, stopped := s.recheck(inc); done {
				return inc, stopped
			}
		case <-health:
			s.startCheck(inc, &lv)
		case err := <-lv.results:
			s.checked(inc, &lv, err)
		case <-lv.restartDue():
			s.log.Warn("replica stayed unhealthy; killing it to restart it", "pid", inc.proc.Pid(),
				"unhealthy_for", s.sup.cfg().RestartUnhealthyAfter, "inflight", inc.be.InFlight())
			inc.killedFor = ReasonUnhealthy
			// Its requests in flight get no response and go to another
			// replica; no new ones come while it is out of rotation.
			_ = inc.proc.Kill()
			return inc, false
		case req := <-s.replace:
			next, err := s.successor(inc, req.reason)
			req.done <- err
			if next != nil {
				inc = next
				lv.reset()
				s.clearHealthErr()
			}
		case <-recycle.C:
			s.warnSlow(inc)
			reason := s.recycleReason(inc)
			if reason == "" || time.Now().Before(recycleAfter) {
				break wait
			}
			next, err := s.successor(inc, reason)
			if err != nil {
				s.log.Error("recycling failed; the replica serves on", "reason", reason, "error", err)
				recycleAfter = time.Now().Add(recycleRetry)
				break wait
			}
			inc = next
			lv.reset()
			s.clearHealthErr()
		}
	}
}

// recheck keeps a replica the proxy reported failed out of rotation until
// a readiness check passes. done is true when the replica must not serve
// again: its process exited or failed the check (then it is killed, for
// the crash path), or a stop came (then it is stopped).
func (s *slot) recheck(inc *incarnation) (done, stopped bool) {
	s.set(control.Starting)
	s.log.Warn("replica failed a request; out of rotation until it passes a readiness check", "pid", inc.proc.Pid())
	s.sup.event(s.name, admin.EventUnhealthy, "failed a request; out of rotation until a readiness check passes")
	if err := s.waitReady(inc); err != nil {
		s.sup.bal.Remove(inc.be) // no longer ejected: gone
		if s.stopping() {
			s.stopProcess(s.force, inc.proc, s.stopCause())
			return true, true
		}
		_ = inc.proc.Kill()
		return true, false
	}
	s.log.Info("replica back in rotation", "pid", inc.proc.Pid())
	s.sup.event(s.name, admin.EventHealthy, "passed a readiness check; back in rotation")
	return false, false
}

// recycleReason says why inc should be replaced now, or "".
func (s *slot) recycleReason(inc *incarnation) string {
	if inc.maxRequests > 0 && inc.be.Requests() >= inc.maxRequests {
		return ReasonMaxReq
	}
	if limit := s.sup.cfg().MaxMemory; limit > 0 {
		if u := s.sup.usage.Sample(inc.proc.Pid()); u.RSSBytes > uint64(limit) {
			return ReasonMemory
		}
	}
	return ""
}

// drain takes be out of rotation and waits, until ctx ends, for its
// in-flight requests to finish.
func (s *slot) drain(ctx context.Context, be *balancer.Backend) {
	idle := s.sup.bal.Remove(be)
	select {
	case <-idle:
	case <-ctx.Done():
		s.log.Warn("requests still in flight at the stop deadline", "inflight", be.InFlight())
	}
}

// stopProcess stops proc, for why: SIGTERM, then SIGKILL when ctx ends.
func (s *slot) stopProcess(ctx context.Context, proc *replica.Process, why string) {
	if err := proc.StopContext(ctx); err != nil {
		s.log.Error("stopping replica", "error", err)
	}
	s.mu.Lock()
	if s.cur != nil && s.cur.proc == proc {
		s.state = control.Stopped
	}
	s.lastExit = proc.Exit().String()
	s.mu.Unlock()
	s.sup.stateChanged()
	s.log.Info("replica stopped", "pid", proc.Pid(), "exit", proc.Exit().String(), "reason", why)
	s.sup.event(s.name, admin.EventStopped, "pid %d %s (%s)", proc.Pid(), proc.Exit(), why)
}
