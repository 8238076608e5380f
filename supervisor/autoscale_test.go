package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
)

// simLoad drives the autoscaling policy as the loop does, a reading every
// autoscaleTick, from a load given as rates: requests arriving a second,
// what each replica completes a second, and whether requests queue.
type simLoad struct {
	t       *testing.T
	a       *autoscaler
	now     time.Time
	current int
	arrived float64
	done    float64
	room    room // what the room check answers; fits < 0: room for any
	asked   []int
}

func newSim(t *testing.T, minN, maxN, current int, up, down time.Duration) *simLoad {
	return &simLoad{t: t, a: newAutoscaler(minN, maxN, up, down), now: time.Unix(1_700_000_000, 0), current: current, room: room{fits: -1}}
}

// phase feeds readings for d with arrivals at arriving a second, each
// replica completing perReplica a second (at its cap of 1, 100ms a
// request: Little's law gives 10), queued requests waiting when queued is
// more than 0. It applies every verdict that changes the count, as the
// loop does, and returns them.
func (s *simLoad) phase(d time.Duration, arriving, perReplica float64, queued int) []autoscaleVerdict {
	var changes []autoscaleVerdict
	for end := s.now.Add(d); s.now.Before(end); {
		s.now = s.now.Add(autoscaleTick)
		s.arrived += arriving * autoscaleTick.Seconds()
		s.done += min(arriving, perReplica*float64(s.current)) * autoscaleTick.Seconds()
		if queued > 0 {
			s.done = s.done - min(arriving, perReplica*float64(s.current))*autoscaleTick.Seconds() + perReplica*float64(s.current)*autoscaleTick.Seconds()
		}
		l := balancer.Load{Arrived: uint64(s.arrived), Completed: uint64(s.done), Queued: queued, Backends: s.current, Slots: s.current,
			InFlight: s.current, ServiceTime: 100 * time.Millisecond}
		if queued > 0 {
			l.QueueWait = time.Second
		}
		v := s.a.decide(autoscaleReading{now: s.now, current: s.current, load: l, room: func(more int) room {
			s.asked = append(s.asked, more)
			if s.room.fits < 0 {
				return room{fits: more}
			}
			return s.room
		}})
		if v.target != s.current {
			changes = append(changes, v)
			s.current = v.target
		}
	}
	return changes
}

func targets(vs []autoscaleVerdict) []int {
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = v.target
	}
	return out
}

func TestAutoscaleUpAfterTheDelayNotBefore(t *testing.T) {
	s := newSim(t, 1, 6, 1, 5*time.Second, time.Minute)
	if ch := s.phase(4500*time.Millisecond, 35, 10, 20); len(ch) != 0 {
		t.Fatalf("scaled before the up delay: %+v", ch)
	}
	ch := s.phase(time.Second, 35, 10, 20)
	// 35 req/s over 10 a replica at 80%: 5, in one decision.
	if len(ch) != 1 || ch[0].target != 5 {
		t.Fatalf("after the up delay: %+v, want one change to 5", ch)
	}
	if r := ch[0].reason; !strings.Contains(r, "requests queued for 5.0 s") || !strings.Contains(r, "35.0 req/s arriving") {
		t.Errorf("reason %q, want how long requests queued and the rate", r)
	}
}

func TestAutoscaleQueueBlipsDoNotScaleUp(t *testing.T) {
	s := newSim(t, 1, 6, 2, 3*time.Second, time.Minute)
	// Requests queue for 2.5 s at a time, then the queue empties: never
	// the 3 s the up delay asks for.
	for range 10 {
		if ch := s.phase(2500*time.Millisecond, 19, 10, 3); len(ch) != 0 {
			t.Fatalf("a queue that did not last scaled: %+v", ch)
		}
		if ch := s.phase(autoscaleTick, 19, 10, 0); len(ch) != 0 {
			t.Fatalf("scaled at 19 req/s on 2 replicas: %+v", ch)
		}
	}
}

func TestAutoscaleStaysWithinBounds(t *testing.T) {
	s := newSim(t, 2, 3, 2, 2*time.Second, 10*time.Second)
	if ch := s.phase(10*time.Second, 100, 10, 50); len(ch) != 1 || ch[0].target != 3 || ch[0].want != 3 {
		t.Fatalf("100 req/s with at most 3: %+v, want one change to 3", ch)
	}
	if ch := s.phase(20*time.Second, 100, 10, 50); len(ch) != 0 {
		t.Fatalf("scaled past the upper bound: %+v", ch)
	}
	if ch := s.phase(time.Minute, 0, 10, 0); len(targets(ch)) != 1 || ch[0].target != 2 {
		t.Fatalf("idle with at least 2: %v, want 3 -> 2 and no further", targets(ch))
	}
	// Outside the bounds (autoscaling turned on again after a fixed
	// scale): back within them at once.
	s.current = 7
	if ch := s.phase(autoscaleTick, 0, 10, 0); len(ch) != 1 || ch[0].target != 3 {
		t.Fatalf("at 7 with at most 3: %+v", ch)
	}
}

func TestAutoscaleDownAfterItsDelayOneStepAtATime(t *testing.T) {
	s := newSim(t, 1, 6, 4, 3*time.Second, 20*time.Second)
	// 5 req/s fits one replica (5 < 0.8 * 10).
	ch := s.phase(19*time.Second, 5, 10, 0)
	if len(ch) != 0 {
		t.Fatalf("scaled down before the down delay: %+v", ch)
	}
	var at []time.Duration
	begin := s.now
	for range 20 {
		for _, v := range s.phase(autoscaleTick, 5, 10, 0) {
			ch = append(ch, v)
			at = append(at, s.now.Sub(begin))
		}
	}
	if got := targets(ch); len(got) != 3 || got[0] != 3 || got[1] != 2 || got[2] != 1 {
		t.Fatalf("steps %v, want 3 2 1, one at a time", got)
	}
	for i := 1; i < len(at); i++ {
		if at[i]-at[i-1] < downStepEvery {
			t.Errorf("steps %v apart, want at least %v", at[i]-at[i-1], downStepEvery)
		}
	}
	if r := ch[0].reason; !strings.Contains(r, "5.0 req/s for 20 s") {
		t.Errorf("reason %q, want the rate and how long it lasted", r)
	}
	if more := s.phase(time.Minute, 0, 10, 0); len(more) != 0 {
		t.Errorf("went below the lower bound: %+v", more)
	}
}

// TestAutoscaleHysteresis: a load the count fits only within a fifth to
// spare keeps it; a spare spell broken by one reading starts again.
func TestAutoscaleHysteresis(t *testing.T) {
	s := newSim(t, 1, 6, 4, 3*time.Second, 10*time.Second)
	// 26 req/s on 3 replicas would be 87%: 4 stay.
	if ch := s.phase(time.Minute, 26, 10, 0); len(ch) != 0 {
		t.Fatalf("stepped down from 4 at 26 req/s: %+v", ch)
	}
	// Spare for 9 s, then a queued reading, then spare for 9 s: never
	// the 10 s the down delay asks for.
	for range 4 {
		if ch := s.phase(9*time.Second, 10, 10, 0); len(ch) != 0 {
			t.Fatalf("stepped down within the down delay: %+v", ch)
		}
		if ch := s.phase(autoscaleTick, 10, 10, 1); len(ch) != 0 {
			t.Fatalf("one queued reading scaled: %+v", ch)
		}
	}
	// A step up then a fall: the count does not flap back and forth.
	s = newSim(t, 1, 6, 1, 3*time.Second, 30*time.Second)
	changes := s.phase(3500*time.Millisecond, 35, 10, 40)
	changes = append(changes, s.phase(time.Minute, 35, 10, 0)...)
	if got := targets(changes); len(got) != 1 || got[0] != 5 {
		t.Fatalf("steady 35 req/s: changes %v, want one to 5", got)
	}
}

func TestAutoscaleNoRoomStartsNothing(t *testing.T) {
	s := newSim(t, 1, 6, 1, 2*time.Second, time.Minute)
	s.room = room{fits: 0, why: "no room: 1.2 GiB free, a replica needs 2.3 GiB"}
	if ch := s.phase(10*time.Second, 35, 10, 20); len(ch) != 0 {
		t.Fatalf("scaled up with no room: %+v", ch)
	}
	v := s.a.decide(autoscaleReading{now: s.now.Add(autoscaleTick), current: 1,
		load: balancer.Load{Arrived: uint64(s.arrived) + 17, Completed: uint64(s.done) + 5, Queued: 30, Backends: 1, Slots: 1},
		room: func(int) room { return s.room }})
	if v.target != 1 || v.want != 5 || v.reason != s.room.why {
		t.Errorf("verdict %+v, want to stay at 1, want 5, with the room's reason", v)
	}
	// Room for two of the four: two, and the reason says why not more.
	s.room = room{fits: 2, why: "no room for more: 3.0 GiB free, a replica needs 1.4 GiB"}
	ch := s.phase(time.Second, 35, 10, 20)
	if len(ch) != 1 || ch[0].target != 3 || !strings.Contains(ch[0].reason, s.room.why) {
		t.Fatalf("with room for 2: %+v, want 3 and the room's reason", ch)
	}
	if s.asked[len(s.asked)-1] != 4 {
		t.Errorf("room asked for %d more, want 4", s.asked[len(s.asked)-1])
	}
}

// TestAutoscaleLittleBeforeMeasured: before requests have ever queued, a
// replica's capacity comes from its cap and the service time, so an idle
// instance scaled within its bounds still steps down.
func TestAutoscaleLittleBeforeMeasured(t *testing.T) {
	s := newSim(t, 1, 4, 3, 2*time.Second, 5*time.Second)
	if ch := s.phase(10*time.Second, 4, 10, 0); len(ch) == 0 || ch[0].target != 2 {
		t.Fatalf("4 req/s on 3 replicas of 10: %+v, want a step to 2", ch)
	}
}
