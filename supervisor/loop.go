package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

const (
	// probeInterval is how often a starting replica is checked for
	// readiness.
	probeInterval = 100 * time.Millisecond
	// recycleInterval is how often a replica's request count and memory
	// are compared with --max-requests and --max-memory.
	recycleInterval = 2 * time.Second
	// recycleRetry is how long a replica whose successor failed to start
	// serves on before recycling is tried again.
	recycleRetry = 30 * time.Second
	// readyProgressEvery is how often a replica that is not ready yet is
	// logged, with the cause: a model that loads for minutes, a wrong
	// --health path and an app that ignores PORT look alike otherwise.
	readyProgressEvery = 10 * time.Second
)

// run is the slot's loop: start, serve, and on a crash back off and start
// again, until a stop is requested or the replica fails for good.
func (s *slot) run() {
	defer close(s.done)
	defer s.release()
	defer s.markFirstDone()
	defer s.sup.releasePorts(s)
	booted := false
	begun := time.Now()
	transient := 0 // start errors in a row that were not the command's fault
	for {
		port := s.sup.portFor(s, s.port())
		inc, err := s.startPrimary(port)
		if inc == nil {
			switch {
			case s.stopping():
				s.set(control.Stopped)
			case !transientStartError(err):
				s.fail(err)
			case !booted && time.Since(begun) > s.sup.opts.ReadyTimeout:
				s.fail(fmt.Errorf("%w (still, after --ready-timeout %s)", err, s.sup.opts.ReadyTimeout))
			default:
				transient++
				if s.retryStart(err, transient) {
					continue
				}
			}
			return
		}
		transient = 0
		served := err == nil // this process was ready and served
		if err != nil {
			if s.stopping() {
				s.stopProcess(s.force, inc.proc, s.stopCause())
				return
			}
			if !booted {
				// As gunicorn's arbiter: a replica that never came up
				// is a broken command or model, not a crash to retry.
				s.fail(fmt.Errorf("%s (port %d) %w", s.name, port, err))
				return
			}
			s.log.Warn("replica did not become ready", "pid", inc.proc.Pid(), "error", err)
		} else {
			booted = true
			var stopped bool
			if inc, stopped = s.serve(inc); stopped {
				return
			}
		}

		exit := inc.proc.Exit()
		uptime := time.Since(inc.proc.StartedAt())
		// What the crashed process forked must not outlive it: it could
		// hold the port, or even answer the successor's readiness probe.
		_ = inc.proc.Kill()
		s.retire(inc)
		s.mu.Lock()
		s.lastExit = exit.String()
		s.mu.Unlock()
		delay, ok := s.backoff.Crash(uptime)
		if !ok {
			if !served {
				// Restarted and never ready again, time after time: a
				// broken command or model, as at boot.
				s.fail(fmt.Errorf("%s crashed %d times in a row (last: %s) and did not become ready again; not restarting it", s.name, s.backoff.crashes, exit))
				return
			}
			// A replica that served before it crashed is always brought
			// back, as Kubernetes does, at the longest backoff: an OOM kill
			// every minute must not leave the service with no replica.
			delay = s.backoff.longest()
		}
		reason, metric := "crash: "+exit.String(), "crash"
		if inc.killedFor != "" {
			reason, metric = inc.killedFor, inc.killedFor
		}
		s.log.Warn("replica exited; restarting", "pid", inc.proc.Pid(), "exit", exit.String(), "reason", reason, "uptime", uptime.Round(time.Millisecond), "restart_in", delay)
		s.sup.event(s.name, admin.EventCrash, "pid %d: %s, after %s up; restarting in %s", inc.proc.Pid(), reason, uptime.Round(time.Second), delay)
		s.mu.Lock()
		s.state = control.Backoff
		s.restarts++
		s.lastRestart = reason
		s.mu.Unlock()
		s.sup.stateChanged()
		s.sup.metrics.Restarted(s.name, metric)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			s.set(control.Stopped)
			return
		}
	}
}

// launch starts a process of this replica on port, once the start gate
// (--start-concurrency) lets it, and waits until it is ready and warmed up
// (--warmup). On failure the process is killed and, if it got that far,
// returned for its exit.
func (s *slot) launch(port int, primary bool) (*incarnation, error) {
	release, err := s.sup.startGate(s.ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if s.testHookStart != nil {
		if err := s.testHookStart(); err != nil {
			return nil, err
		}
	}
	spec := replica.Spec{ID: s.id, Port: port, Command: s.sup.opts.Command, Env: s.env, Tracker: s.sup.tracker, CPUs: s.cpus}
	proc, err := replica.Start(spec, s.sup.out)
	if err != nil {
		return nil, err
	}
	be := balancer.NewBackend(s.id, s.name, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if s.id <= len(s.sup.opts.Weights) {
		be.Weight = s.sup.opts.Weights[s.id-1]
	}
	inc := &incarnation{proc: proc, be: be, port: port}
	be.Alive = inc.alive
	if n := s.sup.opts.MaxRequests; n > 0 {
		// Jitter, as gunicorn's, so replicas do not all recycle at once.
		inc.maxRequests = uint64(n + rand.IntN(s.sup.opts.MaxRequestsJitter+1))
	}
	if primary {
		s.mu.Lock()
		s.cur, s.state, s.err, s.healthErr = inc, control.Starting, nil, ""
		s.mu.Unlock()
		s.sup.stateChanged()
	}
	s.log.Debug("replica started", "pid", proc.Pid(), "port", port)
	s.sup.event(s.name, admin.EventStart, "pid %d, port %d", proc.Pid(), port)
	if err := s.waitReady(inc); err != nil {
		_ = proc.Kill()
		return inc, err
	}
	if err := s.warmUp(inc); err != nil {
		_ = proc.Kill()
		return inc, err
	}
	return inc, nil
}

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
	if d := s.sup.opts.HealthInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		health = t.C
	}
	lv := newLiveness(s.sup.opts)
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
				"unhealthy_for", s.sup.opts.RestartUnhealthyAfter, "inflight", inc.be.InFlight())
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
	if limit := s.sup.opts.MaxMemory; limit > 0 {
		if u := s.sup.usage.Sample(inc.proc.Pid()); u.RSSBytes > uint64(limit) {
			return ReasonMemory
		}
	}
	return ""
}

// waitReady probes inc until it is ready, exits, the ready timeout passes
// or a stop is requested. Every readyProgressEvery meanwhile it logs why
// inc is not ready; the ready-timeout error names the last cause.
func (s *slot) waitReady(inc *incarnation) error {
	timeout := s.sup.opts.ReadyTimeout
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	probe := s.sup.opts.probe(inc.port)
	progress := replica.Progress{Every: readyProgressEvery, Report: func(waited time.Duration, last error) {
		s.log.Info("replica not ready yet", "pid", inc.proc.Pid(), "port", inc.port, "waited", waited.Round(time.Second),
			"last_check", last.Error(), "ready_timeout", timeout)
	}}
	err := probe.WaitReady(ctx, inc.proc, probeInterval, progress)
	var notReady *replica.NotReadyError
	if errors.Is(err, context.DeadlineExceeded) && errors.As(err, &notReady) {
		return fmt.Errorf("did not become ready within %s; last check: %v", timeout, notReady.Last)
	}
	return err
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
