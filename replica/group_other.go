//go:build !linux

package replica

import (
	"context"
	"time"

	"github.com/shirou/gopsutil/v3/process"
)

// sweepEvery is how often the sampler looks for processes that have gone
// and forgets them.
const sweepEvery = time.Minute

// pidUsage is the latest reading of one process.
type pidUsage struct {
	proc    *process.Process
	last    Usage
	at      time.Time // when last was read
	cpuSecs float64   // CPU time at that reading
}

// samplerState is the latest reading of each process asked about: without
// /proc, a group's members cannot be found, so the leader is read alone.
type samplerState struct {
	pids  map[int]*pidUsage
	swept time.Time // when gone processes were last forgotten
}

// sample returns pid's latest reading, reading it again first when that
// is maxAge old. s.mu is held.
func (s *Sampler) sample(pid int, now time.Time) Usage {
	st := &s.state
	if st.pids == nil {
		st.pids = make(map[int]*pidUsage)
	}
	e := st.pids[pid]
	if e != nil && now.Sub(e.at) < s.maxAge {
		return e.last
	}
	s.scans++
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if now.Sub(st.swept) >= sweepEvery {
		for p, old := range st.pids {
			if running, err := old.proc.IsRunningWithContext(ctx); err != nil || !running {
				delete(st.pids, p)
			}
		}
		st.swept = now
	}
	if e == nil {
		p, err := process.NewProcessWithContext(ctx, int32(pid))
		if err != nil {
			return Usage{}
		}
		e = &pidUsage{proc: p}
	}
	t, err := e.proc.TimesWithContext(ctx)
	if err != nil { // gone
		delete(st.pids, pid)
		return Usage{}
	}
	var u Usage
	if mem, err := e.proc.MemoryInfoWithContext(ctx); err == nil {
		u.RSSBytes = mem.RSS
	}
	secs := t.User + t.System
	switch {
	case !e.at.IsZero():
		if dt := now.Sub(e.at).Seconds(); dt > 0 {
			u.CPUPercent = 100 * (secs - e.cpuSecs) / dt
		}
	default: // first reading: its average over the process's life
		if created, err := e.proc.CreateTimeWithContext(ctx); err == nil {
			if life := now.Sub(time.UnixMilli(created)).Seconds(); life > 0 {
				u.CPUPercent = 100 * secs / life
			}
		}
	}
	e.last, e.at, e.cpuSecs = u, now, secs
	st.pids[pid] = e
	return u
}
