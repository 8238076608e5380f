package replica

import (
	"context"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/process"
)

// Usage is a replica's resource use.
type Usage struct {
	// CPUPercent is the CPU used since the previous sample (or over the
	// process's life, for the first), where 100 is one whole core.
	CPUPercent float64
	// RSSBytes is the resident memory of the process and, on Linux, of
	// every process in its group (what it forked).
	RSSBytes uint64
}

// Sampler samples a replica's CPU and memory (on Linux, of its whole
// process group), caching the result so that
// frequent status calls do not cost a /proc read each.
type Sampler struct {
	pid    int32
	maxAge time.Duration

	mu      sync.Mutex // guards the fields below
	proc    *process.Process
	last    Usage
	at      time.Time
	cpuSecs float64
}

// NewSampler returns a sampler for pid whose results are reused for maxAge.
func NewSampler(pid int, maxAge time.Duration) *Sampler {
	return &Sampler{pid: int32(pid), maxAge: maxAge}
}

// Sample returns the process's usage, at most maxAge old. A process that
// has exited reads as zero.
func (s *Sampler) Sample() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.at.IsZero() && now.Sub(s.at) < s.maxAge {
		return s.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.proc == nil {
		p, err := process.NewProcessWithContext(ctx, s.pid)
		if err != nil {
			return Usage{}
		}
		s.proc = p
	}
	var u Usage
	secs, rss, ok := groupUsage(int(s.pid))
	if !ok { // not Linux, or the group is gone: the process alone
		if mem, err := s.proc.MemoryInfoWithContext(ctx); err == nil {
			rss = mem.RSS
		}
		if t, err := s.proc.TimesWithContext(ctx); err == nil {
			secs, ok = t.User+t.System, true
		}
	}
	u.RSSBytes = rss
	if ok {
		switch {
		case !s.at.IsZero():
			u.CPUPercent = 100 * (secs - s.cpuSecs) / now.Sub(s.at).Seconds()
		default:
			if created, err := s.proc.CreateTimeWithContext(ctx); err == nil {
				if life := now.Sub(time.UnixMilli(created)).Seconds(); life > 0 {
					u.CPUPercent = 100 * secs / life
				}
			}
		}
		s.cpuSecs = secs
	}
	if u.CPUPercent < 0 {
		u.CPUPercent = 0
	}
	s.last, s.at = u, now
	return u
}
