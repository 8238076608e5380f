//go:build !linux

package main

import (
	"errors"
	"time"
)

// attackOptions configure the attack scenario, which runs on Linux only.
type attackOptions struct {
	resetFor      time.Duration
	uploadStreams int
}

// runAttacks needs Linux: /proc for the supervisor's memory and
// descriptors, Pdeathsig, and 127.0.0.2 routed to lo.
func runAttacks(*environment, attackOptions) error {
	return errors.New("the attack scenario runs on Linux only")
}
