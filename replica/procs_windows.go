package replica

import "errors"

// procInfo is what the sweep needs to know of one process.
type procInfo struct {
	pid   int
	start int64
}

var errGone = errors.New("no such process")

// On Windows nothing is recorded or swept: a replica there is a single
// process that Stop kills (see process_windows.go).
func procStart(int) (int64, error) { return 0, errors.ErrUnsupported }

func groupMembers(int) []procInfo { return nil }

func bootID() string { return "" }
