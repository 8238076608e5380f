package supervisor

import "github.com/mattingctl/mattingctl/internal/fdbudget"

// warnFileBudget logs when scaling to replicas leaves the client
// connections fewer file descriptors than --max-conns was sized for at
// start: new replicas then share the descriptors with the clients, and at
// the limit a replica may fail to start.
func (s *Supervisor) warnFileBudget(replicas int) {
	limit := fdbudget.OpenFileLimit()
	perConn := 1
	if s.opts.MaxInflight == 0 {
		perConn = 2 // a client connection and its replica connection
	}
	reserve := fdbudget.Reserve(replicas, s.opts.MaxInflight)
	if need := uint64(reserve + perConn*s.opts.MaxConns); need > limit {
		s.log.Warn("--max-conns and the replicas together may need more file descriptors than ulimit -n allows; restart with a higher ulimit -n or a lower --max-conns",
			"replicas", replicas, "max_conns", s.opts.MaxConns, "ulimit_n", limit, "reserve", reserve)
	}
}
