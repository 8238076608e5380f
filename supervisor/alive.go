package supervisor

// alive reports whether inc's process is running and its last liveness
// check, if any ran, passed. The balancer asks it (balancer.Backend.Alive)
// when the replica refuses or resets a connection: alive, the replica is
// busy and stays in rotation; otherwise it is dead and taken out at once.
func (inc *incarnation) alive() bool {
	select {
	case <-inc.proc.Done():
		return false
	default:
		return !inc.checkFailed.Load()
	}
}
