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
	// readyProgressEvery is how often a replica that is not ready yet is
	// logged, with the cause: a model that loads for minutes, a wrong
	// --health path and an app that ignores PORT look alike otherwise.
	readyProgressEvery = 10 * time.Second
	// wrongPathAfter is how long the first process of an initial replica
	// may answer 404 or 405 on --health before up fails: a model loading
	// answers 503 or nothing, a path the application lacks 404 forever.
	wrongPathAfter = 30 * time.Second
	// wrongPortAfter is how long the first process of an initial replica
	// may listen on other ports, and not on its own, before up fails: an
	// application that ignores PORT.
	wrongPortAfter = 3 * time.Second
)

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
	// Each process starts under the configuration in force, which a
	// reload may have changed since the last: a rolling restart is how
	// a changed command, environment or placement reaches every replica.
	c := s.sup.cfg()
	env, gpu, cpus := placement(c, s.id)
	spec := replica.Spec{ID: s.id, Service: s.sup.service, Port: port, Command: c.Command, Env: env, Tracker: s.sup.tracker, CPUs: cpus}
	proc, err := replica.Start(spec, s.sup.out)
	if err != nil {
		return nil, err
	}
	be := balancer.NewBackend(s.id, s.name, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	be.SetWeight(c.weight(s.id))
	inc := &incarnation{proc: proc, be: be, port: port, gpu: gpu, cpus: cpus, probe: c.probe(port)}
	be.Alive = inc.alive
	if n := c.MaxRequests; n > 0 {
		// Jitter, as gunicorn's, so replicas do not all recycle at once.
		inc.maxRequests = uint64(n + rand.IntN(c.MaxRequestsJitter+1))
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

// waitReady probes inc until it is ready, exits, the ready timeout passes
// or a stop is requested. Every readyProgressEvery meanwhile it logs why
// inc is not ready; the ready-timeout error names the last cause. The
// first process of a replica that up starts fails sooner when it cannot
// become ready: its --health path answers 404 or 405 (wrongPathAfter) or it
// listens on another port (wrongPortAfter); later ones, after a restart,
// follow the crash policy's rules.
func (s *slot) waitReady(inc *incarnation) error {
	timeout := s.sup.cfg().ReadyTimeout
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	defer s.setNotReady("")
	probe := inc.probe
	w := replica.Wait{
		Progress: replica.Progress{Every: readyProgressEvery, Report: func(waited time.Duration, last error) {
			s.log.Info("replica not ready yet", "pid", inc.proc.Pid(), "port", inc.port, "waited", waited.Round(time.Second),
				"last_check", last.Error(), "ready_timeout", timeout)
		}},
		Checked: func(cause error) { s.setNotReady(cause.Error()) },
	}
	if s.atStartup() {
		w.WrongPath, w.WrongPort = wrongPathAfter, wrongPortAfter
	}
	err := probe.WaitReady(ctx, inc.proc, w)
	var notReady *replica.NotReadyError
	var wrongPath *replica.WrongPathError
	var wrongPort *replica.WrongPortError
	switch {
	case errors.Is(err, context.DeadlineExceeded) && errors.As(err, &notReady):
		return fmt.Errorf("did not become ready within %s; last check: %v", timeout, notReady.Last)
	case errors.As(err, &wrongPath):
		return &startupError{fmt.Sprintf("%s: %v: %s", s.name, wrongPath, healthAdvice(wrongPath.Tried))}
	case errors.As(err, &wrongPort):
		return &startupError{wrongPort.Error()}
	}
	return err
}

// atStartup reports whether the slot is one of the replicas up starts and
// its first process has not been ready yet.
func (s *slot) atStartup() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.booted != nil && !s.firstOnce
}

// setNotReady records why the starting process is not ready, for status.
func (s *slot) setNotReady(cause string) {
	s.mu.Lock()
	s.notReady = cause
	s.mu.Unlock()
}

// startupError is a start-up failure whose text names the replica already.
type startupError struct{ msg string }

func (e *startupError) Error() string { return e.msg }
