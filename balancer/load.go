package balancer

import "time"

// Load is what the proxy is being asked to do and what its backends are
// doing with it, read at one moment: what an autoscaler decides from.
type Load struct {
	// Arrived counts the requests that have asked for a backend since the
	// balancer started (a retry is not counted again), and Completed the
	// attempts that have ended on one (answered, failed or given back).
	// Their rates are the arrival rate and, while requests wait in the
	// queue, what the backends complete at their caps.
	Arrived, Completed uint64
	// Queued is the number of requests waiting for a backend with room,
	// and QueueWait how long the one at the front has waited (0 when the
	// queue is empty).
	Queued    int
	QueueWait time.Duration
	// InFlight is the requests the backends hold, in rotation or not.
	InFlight int
	// Backends is the number of backends in rotation, and Slots the
	// requests they hold at the caps in force (fixed, or learned now);
	// 0 when there is no cap.
	Backends, Slots int
	// ServiceTime is the weighted mean time a response takes, 0 before
	// the first is timed.
	ServiceTime time.Duration
}

// Load returns the balancer's load now, at now.
func (b *Balancer) Load(now time.Time) Load {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := Load{
		Arrived:   b.arrived.Load(),
		Completed: b.completed.Load(),
		Queued:    b.queue.Len(),
		Backends:  len(b.pool),
	}
	if front := b.queue.Front(); front != nil {
		l.QueueWait = max(now.Sub(front.Value.(*waiter).since), 0)
	}
	for _, be := range b.pool {
		l.InFlight += int(be.inflight.Load())
		c := b.capLocked(be)
		if c <= 0 {
			l.Slots = 0
			break
		}
		l.Slots += c
	}
	if b.serviceTime.n > 0 {
		l.ServiceTime = time.Duration(b.serviceTime.mean * float64(time.Second))
	}
	return l
}
