//go:build !linux

package replica

import "errors"

// PinningSupported reports whether Spec.CPUs has an effect here: CPU
// affinity is Linux's sched_setaffinity, so elsewhere it has none.
const PinningSupported = false

// AllowedCPUs returns the CPUs mattingctl itself may run on; it is not
// known outside Linux.
func AllowedCPUs() ([]int, error) {
	return nil, errors.New("CPU affinity is only supported on Linux")
}

// startPinned calls start; CPUs are not pinned outside Linux.
func startPinned(_ []int, start func() error) error { return start() }
