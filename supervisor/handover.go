package supervisor

import (
	"time"

	"github.com/mattingctl/mattingctl/internal/control"
)

// Replica ids are positional (replica-K serves on the K-th port), so
// `scale 2` removes replica-3 and up even when replica-1 and replica-2 are
// in crash backoff. Taking the removed ones out at once could leave no
// replica in rotation. Instead, as a Deployment's rolling update with
// maxUnavailable 0 does, a removed replica that is in rotation keeps
// serving until the kept replicas have as many ready as were ready before
// the scale (at most the new count). It is let go as soon as that holds,
// or when no kept replica that is not ready can still become ready (each
// has failed), or when it leaves rotation itself; a stop of the instance
// stops it with the rest.

// handOver stops the removed slots, highest id first, each as soon as
// letting it go leaves need replicas ready, and each with grace to drain.
// It returns once every one has been asked to stop, or the instance stops.
func (s *Supervisor) handOver(removed []*slot, need int, grace time.Duration) {
	logged := false
	for {
		wake := s.stateChange() // taken before the states are read: no change is missed
		kept, coming := 0, false
		for _, sl := range s.active() {
			switch sl.status().State {
			case control.Ready:
				kept++
			case control.Failed, control.Stopped:
			default:
				coming = true
			}
		}
		serving := 0
		for _, sl := range removed {
			if sl.ready() {
				serving++
			}
		}
		var held []*slot
		for _, sl := range removed {
			if sl.ready() {
				if coming && kept+serving-1 < need {
					held = append(held, sl)
					continue
				}
				serving--
			}
			sl.requestStop(errScaledDown, time.Now().Add(grace))
		}
		if len(held) == 0 {
			if logged {
				s.log.Info("kept replicas are ready; the removed ones stop")
			}
			return
		}
		if !logged {
			logged = true
			names := make([]string, len(held))
			for i, sl := range held {
				names[i] = sl.name
			}
			s.log.Info("removed replicas serve until the kept ones are ready", "serving", names, "ready", kept, "want", need)
		}
		removed = held
		select {
		case <-wake:
		case <-s.ctx.Done():
			return // stop() stops every slot, these included
		}
	}
}

// stateChange returns a channel that is closed at the next change of any
// replica's state.
func (s *Supervisor) stateChange() <-chan struct{} {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// stateChanged wakes whoever waits on stateChange. Callers must not hold
// a slot's mu.
func (s *Supervisor) stateChanged() {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}
