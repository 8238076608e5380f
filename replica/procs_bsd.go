//go:build unix && !linux

package replica

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v3/process"
)

// procInfo is what the sweep needs to know of one process.
type procInfo struct {
	pid   int
	start int64 // procStart's value
}

var errGone = errors.New("no such process")

// procStart returns when pid started, in Unix milliseconds as gopsutil
// reports it, so that a later process that reuses pid is told apart.
func procStart(pid int) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p, err := process.NewProcessWithContext(ctx, int32(pid))
	if err != nil {
		return 0, errGone
	}
	if st, err := p.StatusWithContext(ctx); err == nil && len(st) > 0 && st[0] == process.Zombie {
		return 0, errGone
	}
	return p.CreateTimeWithContext(ctx)
}

// groupMembers returns the live processes whose process group is pgid.
func groupMembers(pgid int) []procInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pids, err := process.PidsWithContext(ctx)
	if err != nil {
		return nil
	}
	var out []procInfo
	for _, p := range pids {
		if g, err := syscall.Getpgid(int(p)); err != nil || g != pgid {
			continue
		}
		if start, err := procStart(int(p)); err == nil {
			out = append(out, procInfo{pid: int(p), start: start})
		}
	}
	return out
}

// bootID is empty here: start times are wall-clock times, which a reboot
// does not repeat.
func bootID() string { return "" }
