//go:build !unix

package accesslog

import "os"

// openFile opens path for append, creating it if missing.
func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}
