//go:build unix

package supervisor

import (
	"os"
	"syscall"
)

// openNonblocking opens path to read without waiting for a FIFO's writer.
func openNonblocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
