//go:build unix

package fdbudget

import "syscall"

// OpenFileLimit is the soft RLIMIT_NOFILE in force. mattingctl does not
// raise it itself: since Go 1.19 the runtime raises a Go program's soft
// limit to its hard limit at start (and gives children the original soft
// limit back), so this is already the most the process may open.
func OpenFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fallbackFileLimit
	}
	return uint64(lim.Cur)
}
