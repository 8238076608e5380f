//go:build unix

package testutil

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockBlock takes an exclusive lock on block b of ports shared by every
// process on the machine: a file in the temporary directory, flock'ed
// without waiting. The kernel drops the lock when the process dies, so a
// test binary killed mid-run leaves no block taken. ok is false if
// another holder has it; if locks cannot be taken at all (a read-only
// temporary directory), every block counts as free and only this
// process's own reservations apply.
func lockBlock(b int) (unlock func(), ok bool) {
	dir := filepath.Join(os.TempDir(), "mattingctl-test-ports")
	if err := os.Mkdir(dir, 0o700); err == nil {
		// Shared by every user's tests, as the ports are.
		_ = os.Chmod(dir, 0o777|os.ModeSticky)
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(b)), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return func() {}, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, false
		}
		return func() {}, true
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, true
}
