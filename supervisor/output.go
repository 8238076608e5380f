package supervisor

// LogLinesDropped is how many lines mattingctl's stdout and stderr could not
// take (blocked past their buffer, or gone): replicas' output, and
// mattingctl's log when it shares their writer. /metrics exports it.
func (s *Supervisor) LogLinesDropped() uint64 { return s.out.Dropped() }
