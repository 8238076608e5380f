//go:build !linux

package pidbudget

// Limits returns no limit: cgroups are Linux's, and elsewhere RLIMIT_NPROC
// is left to fail a fork, which mattingctl reports as a start error.
func Limits() []Limit { return nil }

// Refused is always 0: no pids limit counts refused forks here.
func Refused() int64 { return 0 }
