package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/replica"
)

// successor replaces inc without a moment of lower capacity: it starts a
// new process on another free port, waits until it is ready, puts it into
// rotation, and only then drains and stops inc. If the successor does not
// become ready, inc serves on and the error says why. A stop that comes
// while inc drains leaves it as s.prev, for finish to stop together with
// the successor.
func (s *slot) successor(inc *incarnation, reason string) (*incarnation, error) {
	port, err := s.sup.allocPort(s)
	if err != nil {
		return nil, err
	}
	s.log.Info("replacing replica", "reason", reason, "pid", inc.proc.Pid(), "successor_port", port)
	s.sup.event(s.name, admin.EventRestart, "%s: replacing pid %d with a successor on port %d", reason, inc.proc.Pid(), port)
	next, err := s.launch(port, false)
	if err != nil {
		if next != nil {
			// launch killed it; its port is free once it has exited.
			select {
			case <-next.proc.Done():
			case <-s.force.Done():
			}
		}
		s.sup.freePort(port)
		// Its last lines of output, if quoted, go last.
		why, quote := err.Error(), ""
		if exited := (*replica.ErrExited)(nil); errors.As(err, &exited) {
			why, quote = exited.Summary(), exited.Quote()
		}
		return nil, fmt.Errorf("%s: the successor on port %d %s; the old process serves on%s", s.name, port, why, quote)
	}
	s.mu.Lock()
	s.cur, s.prev = next, inc // together, so that status always finds both
	s.restarts++
	s.lastRestart = reason
	s.mu.Unlock()
	s.sup.bal.Add(next.be)
	s.sup.metrics.Restarted(s.name, reason)
	s.log.Info("successor ready; draining the old process", "pid", next.proc.Pid(), "port", port, "old_pid", inc.proc.Pid())

	// The old process gets a stop timeout of its own, cut short by a
	// forced stop, and handed to finish by a stop of the slot.
	ctx, cancel := context.WithTimeout(s.force, s.sup.cfg().StopTimeout)
	defer cancel()
	drainCtx, stopDrain := context.WithCancel(ctx)
	defer context.AfterFunc(s.ctx, stopDrain)()
	s.drain(drainCtx, inc.be)
	if s.stopping() {
		return next, nil
	}
	s.stopProcess(ctx, inc.proc, "replaced: "+reason)
	s.retire(inc)
	s.sup.freePort(inc.port)
	s.set(control.Ready)
	return next, nil
}

// finish drains and stops the slot's process, and a replaced one still
// draining, at the same time, each within the stop's grace.
func (s *slot) finish(inc *incarnation) {
	s.set(control.Draining)
	s.mu.Lock()
	prev := s.prev
	s.mu.Unlock()
	var wg sync.WaitGroup
	if prev != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.drain(s.force, prev.be)
			// Not stopProcess: last_exit is to tell how inc ended.
			if err := prev.proc.StopContext(s.force); err != nil {
				s.log.Error("stopping replica", "error", err)
			}
			s.log.Info("replaced replica stopped", "pid", prev.proc.Pid(), "exit", prev.proc.Exit().String(), "reason", s.stopCause())
		}()
	}
	s.drain(s.force, inc.be)
	s.stopProcess(s.force, inc.proc, s.stopCause())
	wg.Wait()
	if prev != nil {
		s.retire(prev)
		s.sup.freePort(prev.port)
	}
}
