//go:build !linux

package replica

// awaitExit does nothing here: cmd.Wait blocks an OS thread for each
// running replica (Linux waits in the poller instead; exitwait_linux.go).
func awaitExit(int) bool { return false }
