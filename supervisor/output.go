package supervisor

import (
	"github.com/mattingctl/mattingctl/replica"
)

// LogLinesDropped is how many lines mattingctl's stdout and stderr could not
// take (blocked past their buffer, or gone): replicas' output, and
// mattingctl's log when it shares their writer. /metrics exports it.
func (s *Supervisor) LogLinesDropped() uint64 { return s.out.Dropped() }

// OutputLinesOverRate is how many lines of replica output were dropped
// because a replica wrote more than --output-rate, of every service.
// /metrics exports it.
func (s *Supervisor) OutputLinesOverRate() uint64 {
	var n uint64
	for _, svc := range s.all() {
		n += svc.out.RateDropped()
	}
	return n
}

// newOutput returns the replicas' output as c says: prefixed (by the
// replicas' names, replicaName), never blocking, at most c.OutputRate a
// second from each replica.
func newOutput(c *config, service string, first *Supervisor) *replica.Output {
	width := len(replicaName(service, c.MostReplicas()))
	var out *replica.Output
	if first != nil {
		out = first.out.Share(width) // one queue and one read rate for all
	} else {
		out = replica.NewOutput(c.Stdout, c.Stderr, width)
	}
	out.Rate = c.OutputRate
	return out
}

// replicaName names replica id: replica-ID, or SERVICE-ID for a service of
// several.
func replicaName(service string, id int) string {
	return replica.Spec{ID: id, Service: service}.Name()
}
