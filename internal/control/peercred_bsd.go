//go:build darwin || freebsd

package control

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// socketPeerUID reads LOCAL_PEERCRED of a connected Unix socket (what
// getpeereid reads).
func socketPeerUID(fd int) (int, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, fmt.Errorf("LOCAL_PEERCRED: %w", err)
	}
	return int(cred.Uid), nil
}
