package supervisor

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
)

// sampleEvery is how often the dashboard's history is sampled.
const sampleEvery = time.Second

// startSampling records a point of the dashboard's history every second,
// in one goroutine, until the returned function is called; that function
// waits for the goroutine to end.
func (s *Supervisor) startSampling() (stop func()) {
	return sampling(s.history, s.sample)
}

// sampling records what sample reads in h every sampleEvery until stop
// is called.
func sampling(h *admin.History, sample func() admin.Sample) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		h.Record(time.Now(), sample())
		for {
			select {
			case now := <-t.C:
				h.Record(now, sample())
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// instanceSample is sample of every service of several, summed up, for
// the dashboard's charts.
func (s *Supervisor) instanceSample() admin.Sample {
	var sm admin.Sample
	for _, svc := range s.services {
		one := svc.sample()
		sm.Queued += one.Queued
		sm.Inflight += one.Inflight
		sm.Capacity += one.Capacity
		sm.Rejected += one.Rejected
		sm.Replicas = append(sm.Replicas, one.Replicas...)
	}
	return sm
}

// sample reads what the history keeps from the balancer and the slots: no
// process statistics, so that it costs no /proc scan.
func (s *Supervisor) sample() admin.Sample {
	stats := s.bal.Stats()
	sm := admin.Sample{Queued: stats.Queued, Rejected: stats.Rejected}
	capacity := 0
	for _, sl := range s.snapshot() {
		cur, prev, ready := sl.backends()
		if ready && cur != nil {
			capacity += int(cur.Limit()) // 0 under --max-inflight 0: no capacity to show
		}
		for _, be := range []*balancer.Backend{cur, prev} {
			if be != nil {
				sm.Inflight += be.InFlight()
			}
		}
		lat := s.bal.Latency(cur, prev)
		sm.Replicas = append(sm.Replicas, admin.ReplicaSample{Name: sl.name, Count: lat.LastCount, Mean: lat.LastMean})
	}
	sm.Capacity = capacity
	return sm
}

// backends returns the slot's current process's backend and that of a
// predecessor still draining (either may be nil), and whether it is in
// rotation.
func (s *slot) backends() (cur, prev *balancer.Backend, ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		cur = s.cur.be
	}
	if s.prev != nil {
		prev = s.prev.be
	}
	return cur, prev, s.state == control.Ready
}

// latency returns a replica's responses per second over the last 10
// seconds and its p50 and p99 over the last minute, in milliseconds,
// for status.
func (s *Supervisor) latency(cur, prev *balancer.Backend) (rps, p50, p99 float64) {
	lat := s.bal.Latency(cur, prev)
	return lat.RPS, millis(lat.P50), millis(lat.P99)
}

// latencyStatus is lat's quantiles as status reports them.
func latencyStatus(lat balancer.LatencyStats) control.LatencyStatus {
	return control.LatencyStatus{Responses: lat.Responses, P50Ms: millis(lat.P50), P95Ms: millis(lat.P95), P99Ms: millis(lat.P99)}
}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 { return math.Round(d.Seconds()*1e6) / 1e3 }

// dashboard is what the admin listener serves at /.
func (s *Supervisor) dashboard() admin.Dashboard {
	return admin.Dashboard{History: s.history, Instance: s, Token: s.cfg().AdminToken}
}

// Dashboard says where the dashboard is and the token its actions need,
// for `mattingctl dashboard`: the control socket answers only this user
// and root, who may read the token file too.
func (s *Supervisor) Dashboard() (control.DashboardAccess, error) {
	s.mu.Lock()
	addr := s.admin
	s.mu.Unlock()
	if addr == "" {
		return control.DashboardAccess{}, fmt.Errorf("instance %q has no admin listener, so no dashboard (it was started with --admin none)", s.cfg().Name)
	}
	return control.DashboardAccess{URL: dashboardURL(s.cfg().Admin, addr), Token: s.cfg().AdminToken}, nil
}

// keepToken writes the admin token to the state directory for its owner
// (control.WriteToken) when there is an admin listener, and removes a
// token left by a killed instance of the name when there is none.
func (s *Supervisor) keepToken(adminOn bool) error {
	if !adminOn {
		return control.RemoveToken(s.cfg().StateDir, s.cfg().Name)
	}
	return control.WriteToken(s.cfg().StateDir, s.cfg().Name, s.cfg().AdminToken)
}

// removeToken removes the token file, and the page `mattingctl dashboard
// --open` left, at the end of Run: once the instance is gone, they open
// nothing.
func (s *Supervisor) removeToken() {
	if err := control.RemoveToken(s.cfg().StateDir, s.cfg().Name); err != nil {
		s.log.Warn("removing the admin token file", "error", err)
	}
}

// dashboardCommand is what prints the dashboard's URL with its token, for
// the instance called name.
func dashboardCommand(name string) string {
	if name == control.DefaultName {
		return "mattingctl dashboard"
	}
	return "mattingctl dashboard --name " + name
}

// event adds an entry to the dashboard's timeline.
func (s *Supervisor) event(replica, kind, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.history.Event(replica, kind, msg)
	if s.instHistory != nil {
		s.instHistory.Event(replica, kind, msg)
	}
}
