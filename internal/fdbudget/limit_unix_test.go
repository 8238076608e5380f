//go:build unix

package fdbudget

import (
	"syscall"
	"testing"
)

// TestGoRaisesTheSoftFileLimit: mattingctl relies on the Go runtime
// (1.19+) raising its soft open-file limit to the hard limit at start,
// rather than doing so itself; this test binary is a Go program too.
func TestGoRaisesTheSoftFileLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	// Go sets the soft limit to hard-1 (so that a later prlimit can be
	// told apart), or leaves it when it already was that high.
	if uint64(lim.Cur)+1 < uint64(lim.Max) {
		t.Errorf("soft RLIMIT_NOFILE %d, hard %d: the Go runtime did not raise it", lim.Cur, lim.Max)
	}
	if got := OpenFileLimit(); got != uint64(lim.Cur) {
		t.Errorf("OpenFileLimit() = %d, want the soft limit %d", got, lim.Cur)
	}
}
