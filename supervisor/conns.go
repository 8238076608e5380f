package supervisor

import (
	"github.com/mattingctl/mattingctl/internal/control"
	"github.com/mattingctl/mattingctl/internal/fdbudget"
)

// planFiles shares the open-file limit out among the replicas, the client
// and upgraded connections (deriving --max-conns and --max-upgraded where
// they are 0), the admin listener and the control socket.
func (o *Options) planFiles(limit uint64) (fdbudget.Budget, error) {
	admin := o.AdminMaxConns
	if o.Admin == AdminOff {
		admin = 0
	}
	return fdbudget.Plan(fdbudget.Want{
		Replicas:     o.MostReplicas(),
		MaxInflight:  o.MostInflight(),
		MaxConns:     o.MaxConns,
		MaxUpgraded:  o.MaxUpgraded,
		AdminConns:   admin,
		ControlConns: control.MaxConns,
	}, limit)
}

// checkFileBudget refuses to scale to replicas when they do not fit the
// open-file limit beside the connection caps fixed at start. The limit is
// read again: it may have been raised on the running instance (prlimit).
func (s *Supervisor) checkFileBudget(replicas int) error {
	b := s.cfg().budget
	b.Limit = s.cfg().fileLimit()
	return b.CheckScale(replicas)
}

// fileLimit is the open-file limit, or a service's share of it.
func (o *Options) fileLimit() uint64 {
	limit := fdbudget.OpenFileLimit()
	if o.shareOf > 1 {
		limit /= uint64(o.shareOf)
	}
	return limit
}
