package control

import "fmt"

// CheckReplicaCount refuses a replica count under 1, in the words every
// way of scaling shares: `mattingctl scale N`, the control socket and the
// dashboard's API, as `up --replicas` refuses 0. Counts past the ports or
// the open-file limit are the instance's to refuse (supervisor.Scale).
func CheckReplicaCount(n int) error {
	if n < 1 {
		return fmt.Errorf("replica count must be at least 1, not %d (to stop every replica, run mattingctl down)", n)
	}
	return nil
}
