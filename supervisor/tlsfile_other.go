//go:build !unix

package supervisor

import "os"

// openNonblocking opens path to read; FIFOs are Unix's.
func openNonblocking(path string) (*os.File, error) { return os.Open(path) }
