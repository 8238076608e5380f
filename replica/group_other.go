//go:build !linux

package replica

// groupUsage is not available here; the sampler measures the replica's own
// process only.
func groupUsage(int) (float64, uint64, bool) { return 0, 0, false }
