package supervisor

import (
	"errors"
	"fmt"
	"time"

	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
)

// autoscaleTick is how often the autoscaling loop reads the proxy's load.
const autoscaleTick = 500 * time.Millisecond

// autoState is what status shows of the autoscaler, and whether it is on.
// Supervisor.mu guards it.
type autoState struct {
	on     bool      // false once a scale by hand fixed the count
	target int       // the count the load asks for
	last   string    // the last decision and why
	lastAt time.Time // when it was made
}

// autoscale runs the autoscaling policy (autoscale.go): every
// autoscaleTick it reads the proxy's load, and scales when the policy
// says so, one scale at a time, each waited for (new replicas ready,
// removed ones drained) before the next reading. It ends with the
// instance's context, or once a scale by hand has turned autoscaling off.
func (s *Supervisor) autoscale() {
	policy := newAutoscaler(s.cfg().Replicas, s.cfg().MaxReplicas, s.cfg().ScaleUpDelay, s.cfg().ScaleDownDelay)
	t := time.NewTicker(autoscaleTick)
	defer t.Stop()
	held := "" // the reason a scale-up is held back, recorded once
	for {
		var now time.Time
		select {
		case now = <-t.C:
		case <-s.ctx.Done():
			return
		}
		s.mu.Lock()
		on, cur := s.auto.on, s.desired
		s.mu.Unlock()
		if !on {
			return
		}
		v := policy.decide(autoscaleReading{now: now, current: cur, load: s.bal.Load(now),
			room: func(more int) room { return s.room(cur, more) }})
		switch {
		case v.target != cur:
			held = ""
			s.autoscaleTo(cur, v)
		case v.reason != "" && v.reason != held: // a scale-up held back (no room)
			held = v.reason
			s.decided(v.want, fmt.Sprintf("held at %d, wants %d: %s", cur, v.want, v.reason))
			s.log.Warn("autoscaling held back", "replicas", cur, "wants", v.want, "why", v.reason)
			s.event("", admin.EventAutoscale, "held at %d replicas, wants %d: %s", cur, v.want, v.reason)
		case v.reason == "":
			held = ""
			s.decided(v.want, "")
		}
	}
}

// autoscaleTo scales from cur to v.target, as the policy's verdict v
// says, and records the decision for status.
func (s *Supervisor) autoscaleTo(cur int, v autoscaleVerdict) {
	s.decided(v.want, fmt.Sprintf("scaling %d→%d: %s", cur, v.target, v.reason))
	res, err := s.scale(s.ctx, v.target, &v)
	switch {
	case errors.Is(err, errAutoscaleOff), errors.Is(err, errStopping), s.ctx.Err() != nil:
		return
	case err != nil:
		s.log.Warn("autoscaling refused", "from", cur, "to", v.target, "error", err)
		s.decided(v.want, fmt.Sprintf("scale %d→%d refused: %v", cur, v.target, err))
		s.event("", admin.EventAutoscale, "%d -> %d replicas refused: %v", cur, v.target, err)
		return
	case len(res.Errors) > 0:
		s.decided(v.want, fmt.Sprintf("scaled %d→%d: %s; not ready: %v", cur, v.target, v.reason, res.Errors))
		return
	}
	s.decided(v.want, fmt.Sprintf("scaled %d→%d: %s", cur, v.target, v.reason))
}

// decided records the target and, when not empty, the last decision.
func (s *Supervisor) decided(target int, last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auto.target = target
	if last != "" {
		s.auto.last, s.auto.lastAt = last, time.Now()
	}
}

// autoscaleStatus is the autoscaler's state as status shows it; nil when
// the count is fixed from the start.
func (s *Supervisor) autoscaleStatus() *control.AutoscaleStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auto == nil {
		return nil
	}
	st := &control.AutoscaleStatus{Min: s.cfg().Replicas, Max: s.cfg().MaxReplicas, On: s.auto.on, Target: s.auto.target,
		ScaleUpDelay: s.cfg().ScaleUpDelay.Seconds(), ScaleDownDelay: s.cfg().ScaleDownDelay.Seconds(), Last: s.auto.last}
	if !s.auto.on {
		st.Target = s.desired
	}
	if !s.auto.lastAt.IsZero() {
		t := s.auto.lastAt.UTC()
		st.LastAt = &t
	}
	return st
}
