package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/pidbudget"
)

// errStopping is returned by Scale and RollingRestart once the instance is
// stopping.
var errStopping = errors.New("the instance is stopping")

// Scale sets the number of replicas to n. New replicas take the next ports
// and are waited for until ready, as are failed replicas it keeps, which it
// starts afresh; removed ones (the highest numbered) are taken out of
// rotation, left to finish their requests and stopped, each once the
// replicas kept can take its place (handover.go). It
// returns when that is done or ctx ends; the change goes on regardless,
// and a removed replica stays in status, draining, until it has stopped.
//
// It refuses, in the same words whoever asks (`mattingctl scale`, the
// control socket, the dashboard's API), a count under 1, one whose ports
// would pass 65535, and one that does not fit the open-file limit beside
// the connection caps.
//
// A scale by hand turns autoscaling (--replicas MIN:MAX) off: the count
// set stays.
func (s *Supervisor) Scale(ctx context.Context, n int) (control.ScaleResult, error) {
	return s.scale(ctx, n, nil)
}

// errAutoscaleOff is returned to the autoscaler when a scale by hand
// turned it off while it decided.
var errAutoscaleOff = errors.New("autoscaling was turned off by a scale by hand")

// scale is Scale, by the autoscaler's verdict by, or by hand when by is
// nil. The autoscaler's is refused once a scale by hand has turned it off,
// both checked under scaleMu, so that the count set by hand stays.
func (s *Supervisor) scale(ctx context.Context, n int, by *autoscaleVerdict) (control.ScaleResult, error) {
	if err := control.CheckReplicaCount(n); err != nil {
		return control.ScaleResult{}, err
	}
	s.scaleMu.Lock()
	defer s.scaleMu.Unlock()
	if s.testHookScale != nil {
		s.testHookScale()
	}
	readyBefore := s.Readiness().Ready
	limits := pidbudget.Limits()
	perReplica, measured := int64(1), false
	if len(limits) > 0 {
		perReplica, measured = s.tasksPerReplica()
	}
	s.mu.Lock()
	// Checked under s.mu, where stop takes its list of slots: a slot is
	// either on that list or never started.
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return control.ScaleResult{}, errStopping
	}
	if by != nil && (s.auto == nil || !s.auto.on) {
		s.mu.Unlock()
		return control.ScaleResult{}, errAutoscaleOff
	}
	from := s.desired
	res := control.ScaleResult{Name: s.cfg().Name, From: from, To: n}
	if n < s.cfg().MinReady {
		w := fmt.Sprintf("scaling to %d, fewer than --min-ready %d: /readyz answers 503 while fewer than %d replicas are ready", n, s.cfg().MinReady, s.cfg().MinReady)
		res.Warnings = append(res.Warnings, w)
		s.log.Warn("scaling below --min-ready", "to", n, "min_ready", s.cfg().MinReady)
	}
	var changed, removed []*slot
	switch {
	case n > from:
		if n+s.cfg().BasePort-1 > maxPort {
			s.mu.Unlock()
			return res, fmt.Errorf("cannot scale to %d: replica ports would pass 65535", n)
		}
		if err := s.checkFileBudget(n); err != nil {
			s.mu.Unlock()
			return res, err
		}
		if err := checkTasks(limits, from, n, perReplica, measured); err != nil {
			s.mu.Unlock()
			s.log.Warn("scale refused", "to", n, "error", err)
			return res, err
		}
		if err := s.checkNewPortsLocked(from+1, n); err != nil {
			s.mu.Unlock()
			return res, err
		}
		if w := s.cfg().cpuShareWarning(n); w != "" {
			res.Warnings = append(res.Warnings, w)
			s.log.Warn(w)
		}
		for id := from + 1; id <= n; id++ {
			changed = append(changed, s.addSlotLocked(id, ReasonScale))
		}
	case n < from:
		for id := from; id > n; id-- {
			sl := s.slots[id]
			removed = append(removed, sl)
			// Out of the table, but kept until it has stopped: status
			// shows it and stop waits for it.
			delete(s.slots, id)
			s.removed[sl] = true
			s.bg.Go(func() { s.forget(sl) })
		}
		changed = append(changed, removed...)
	}
	if by == nil && s.auto != nil && s.auto.on {
		s.auto.on = false
		res.AutoscaleOff = fmt.Sprintf("autoscaling (--replicas %d:%d) is off: the count stays at %d until the instance restarts", s.cfg().Replicas, s.cfg().MaxReplicas, n)
	}
	s.desired = n
	s.mu.Unlock()
	if by != nil {
		s.log.Info("autoscaling", "from", from, "to", n, "why", by.reason)
		s.event("", admin.EventAutoscale, "%d -> %d replicas: %s", from, n, by.reason)
	} else {
		s.log.Info("scaling", "from", from, "to", n)
		s.event("", admin.EventScale, "%d -> %d replicas", from, n)
	}
	if res.AutoscaleOff != "" {
		s.log.Info("autoscaling off: the count was set by hand", "replicas", n)
	}
	// Failed replicas are not retried on their own: a scale that keeps
	// them starts them afresh.
	revived := s.reviveFailed(min(n, from))
	changed = append(revived, changed...)
	// The hand-over counts on the kept replicas: it starts once the failed
	// ones are starting afresh, not seen failed before.
	if len(removed) > 0 {
		s.bg.Go(func() { s.handOver(removed, min(n, readyBefore), s.cfg().StopTimeout) })
	}

	for _, sl := range changed {
		stopping := n < from && sl.id > n
		wait := sl.firstDone
		if stopping {
			wait = sl.done
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return res, fmt.Errorf("scaling from %d to %d: %w (it goes on in the background)", from, n, ctx.Err())
		}
		st := sl.status()
		if stopping {
			res.Stopped = append(res.Stopped, st)
			continue
		}
		res.Started = append(res.Started, st)
		if err := sl.failure(); err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	return res, nil
}

// addSlotLocked creates replica id's slot and starts its loop. The caller
// holds s.mu and has checked that the instance is not stopping.
func (s *Supervisor) addSlotLocked(id int, reason string) *slot {
	sl := newSlot(s, id, reason)
	s.slots[id] = sl
	s.bg.Go(sl.run)
	return sl
}

// forget drops a removed slot once it has stopped.
func (s *Supervisor) forget(sl *slot) {
	<-sl.done
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.removed, sl)
}
