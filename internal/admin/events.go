package admin

import "time"

// eventsKept is how many events the history keeps, the newest.
const eventsKept = 500

// The kinds of Event.
const (
	EventStart     = "start"     // a replica process started (Detail: pid, port, why)
	EventReady     = "ready"     // in rotation
	EventCrash     = "crash"     // exited on its own or was killed to restart it (Detail: exit, reason, delay)
	EventRestart   = "restart"   // a successor replaces the process (Detail: why: rolling restart, memory, max-requests)
	EventFailed    = "failed"    // not retried any more (Detail: why)
	EventStopped   = "stopped"   // stopped on purpose (Detail: exit, why)
	EventUnhealthy = "unhealthy" // out of rotation: liveness checks or a failed request (Detail: why)
	EventHealthy   = "healthy"   // back in rotation after being unhealthy
	EventScale     = "scale"     // the replica count changed (Detail: from -> to)
	EventRolling   = "rolling restart"
	EventAutoscale = "autoscale" // the autoscaler changed the count, or could not (Detail: from -> to, why)
	EventReload    = "reload"    // settings changed by a reload or set (Detail: which)
)

// Event is one entry in the dashboard's timeline.
type Event struct {
	// Seq numbers events from 1 in the order they happened.
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Replica string    `json:"replica,omitempty"` // empty for the instance
	Kind    string    `json:"kind"`
	Detail  string    `json:"detail,omitempty"`
}

// Event records an event now. It is safe on a nil History.
func (h *History) Event(replica, kind, detail string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	h.events[h.seq%eventsKept] = Event{Seq: h.seq, Time: time.Now().UTC(), Replica: replica, Kind: kind, Detail: detail}
}

// eventsAfter returns the events kept whose Seq is over seq, oldest
// first.
func (h *History) eventsAfter(seq uint64) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := max(seq+1, 1)
	if h.seq >= eventsKept {
		first = max(first, h.seq-eventsKept+1)
	}
	evs := make([]Event, 0, h.seq+1-min(first, h.seq+1))
	for n := first; n <= h.seq; n++ {
		evs = append(evs, h.events[n%eventsKept])
	}
	return evs
}
