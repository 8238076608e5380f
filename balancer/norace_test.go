//go:build !race

package balancer

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = false
