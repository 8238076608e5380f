package supervisor

import (
	"maps"
	"os"
	"sort"

	"github.com/mattingctl/mattingctl/balancer"
	"github.com/mattingctl/mattingctl/internal/admin"
	"github.com/mattingctl/mattingctl/internal/control"
)

// snapshot returns every slot, the removed ones that are still stopping
// included, by replica id, so that they can be worked on without s.mu.
func (s *Supervisor) snapshot() []*slot {
	s.mu.Lock()
	slots := make([]*slot, 0, len(s.slots)+len(s.removed))
	for _, sl := range s.slots {
		slots = append(slots, sl)
	}
	for sl := range s.removed {
		slots = append(slots, sl)
	}
	s.mu.Unlock()
	sortSlots(slots)
	return slots
}

// active returns the slots of the replicas wanted, by replica id.
func (s *Supervisor) active() []*slot {
	s.mu.Lock()
	slots := make([]*slot, 0, len(s.slots))
	for _, sl := range s.slots {
		slots = append(slots, sl)
	}
	s.mu.Unlock()
	sortSlots(slots)
	return slots
}

// sortSlots orders slots by id, a removed slot before its successor.
func sortSlots(slots []*slot) {
	sort.SliceStable(slots, func(i, j int) bool {
		if slots[i].id != slots[j].id {
			return slots[i].id < slots[j].id
		}
		return slots[i].stopping() && !slots[j].stopping()
	})
}

// Status reports the instance and each replica.
func (s *Supervisor) Status() control.Status {
	slots := s.snapshot()
	s.mu.Lock()
	desired, adminAddr := s.desired, s.admin
	s.mu.Unlock()
	stats := s.bal.Stats()
	c := s.cfg()
	st := control.Status{
		Admin:       adminAddr,
		MaxInflight: c.MostInflight(),
		Queued:      stats.Queued,
		QueueMax:    c.Queue,
		Rejected:    stats.Rejected,
		Retried:     stats.Retried,
		Failed:      stats.Failed,

		Quarantined:    stats.Quarantined,
		QuarantineHits: stats.QuarantineHits,
		ClientLimited:  stats.Limited,
		Batches:        stats.Batches,
		Batched:        stats.Batched,
		BatchesSplit:   stats.BatchesSplit,
		Name:           c.Name,
		Host:           c.Host,
		Port:           c.Port,
		URL:            s.proxyURL,
		Pid:            os.Getpid(),
		Desired:        desired,
		Command:        c.Command,
		Policy:         c.Policy,
		StartedAt:      s.started.UTC(),
		Replicas:       make([]control.ReplicaStatus, 0, len(slots)),
		Conns:          stats.Conns,
		MaxConns:       c.MaxConns,
		MaxUpgraded:    c.MaxUpgraded,
	}
	st.SendTimeouts, st.UpstreamTimeouts = stats.SendTimeouts, stats.UpstreamTimeouts
	if c.Adaptive() {
		st.AdaptiveInflight = &control.InflightBounds{Min: c.AdaptiveInflight.Min, Max: c.AdaptiveInflight.Max}
	}
	st.Settings = make(map[string]string, len(settings))
	for _, set := range settings {
		if set.flag != "admin-token" {
			st.Settings[set.flag] = set.value(&c.Options)
		}
	}
	s.infoMu.Lock()
	if len(s.info.changed) > 0 {
		st.Changed = maps.Clone(s.info.changed)
	}
	if !s.info.at.IsZero() {
		at := s.info.at.UTC()
		st.ChangedAt, st.ChangedBy = &at, s.info.by
	}
	s.infoMu.Unlock()
	st.Autoscale = s.autoscaleStatus()
	bes := make([]*balancer.Backend, 0, 2*len(slots))
	for _, sl := range slots {
		st.Replicas = append(st.Replicas, sl.status())
		cur, prev, _ := sl.backends()
		bes = append(bes, cur, prev)
	}
	st.Latency = latencyStatus(s.bal.Latency(bes...))
	return st
}

// Readiness is what /readyz answers from: the replicas in rotation (a
// removed one still serving until the kept ones are ready included), and
// whether a stop has begun.
func (s *Supervisor) Readiness() admin.Readiness {
	rd := admin.Readiness{MinReady: s.cfg().MinReady, Stopping: s.ctx.Err() != nil}
	for _, sl := range s.snapshot() {
		if sl.ready() {
			rd.Ready++
		}
	}
	return rd
}

// Ping returns once the supervisor's state lock can be taken, for /livez.
func (s *Supervisor) Ping() {
	s.mu.Lock()
	s.mu.Unlock() //nolint:staticcheck // taking the lock is the check
}
