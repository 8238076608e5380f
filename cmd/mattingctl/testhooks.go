package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/mattingctl/mattingctl/supervisor"
)

// memAvailableHook is the environment variable through which the
// end-to-end tests fake the free memory the autoscaler's room check reads
// (a number of bytes), to prove that no replica starts on a machine short
// of it. It is a test hook, documented in docs/development.md, not a
// setting: nothing else reads it.
const memAvailableHook = "MATTINGCTL_TEST_MEM_AVAILABLE"

// applyTestHooks sets what the test hooks in the environment ask for.
func applyTestHooks(o *supervisor.Options) error {
	v, ok := os.LookupEnv(memAvailableHook)
	if !ok {
		return nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("%s=%q: want a number of bytes (a test hook; unset it)", memAvailableHook, v)
	}
	o.MemAvailable = func() (uint64, error) { return n, nil }
	return nil
}
