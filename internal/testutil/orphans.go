package testutil

import (
	"os"
	"strconv"
)

// A test that starts helper processes (its own binary in a helper mode,
// as os/exec's tests do) cleans them up when it ends; but a test binary
// killed with SIGKILL ends no test, and the helpers' own children, whose
// killing is often what a test is about, would run on. So every helper
// process watches the test binary and exits once it has gone.

// testBinaryEnv holds the pid of the test binary, for its helpers.
const testBinaryEnv = "MATTINGCTL_TEST_BINARY"

// MarkTestBinary records this process as the test binary, in the
// environment its helper processes inherit, unless it is a helper itself
// (an ancestor recorded itself already). A package's tests call it from
// init.
func MarkTestBinary() {
	if os.Getenv(testBinaryEnv) == "" {
		_ = os.Setenv(testBinaryEnv, strconv.Itoa(os.Getpid()))
	}
}

// ExitWithTestBinary makes a helper process exit once the test binary
// recorded by MarkTestBinary has: it checks a few times a second.
func ExitWithTestBinary() {
	pid, err := strconv.Atoi(os.Getenv(testBinaryEnv))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return
	}
	go watchTestBinary(pid)
}
