package replica

import (
	"sync"
	"time"
)

// Usage is a replica's resource use.
type Usage struct {
	// CPUPercent is the CPU used since the previous sample (or over the
	// process's life, for the first), where 100 is one whole core.
	CPUPercent float64
	// RSSBytes is the resident memory of the process and, on Linux, of
	// every process in its group (what it forked).
	RSSBytes uint64
	// Tasks is how many threads the process group has in all, each a task
	// against a pids limit (Linux; zero elsewhere).
	Tasks int
}

// Sampler samples the CPU and memory of replicas: one serves a whole
// supervisor and is safe for concurrent use. On Linux one read of /proc
// measures every process group at once and answers every Sample call for
// maxAge, so N replicas cost one scan rather than N; elsewhere each replica's
// own process is read (and cached for maxAge) alone.
type Sampler struct {
	maxAge time.Duration

	mu    sync.Mutex       // guards the fields below
	now   func() time.Time // the clock; tests move it
	scans int              // /proc scans (Linux) or process reads (elsewhere) done; tests count them
	state samplerState     // what the platform's sample keeps between calls
}

// NewSampler returns a sampler whose readings are reused for maxAge.
func NewSampler(maxAge time.Duration) *Sampler {
	return &Sampler{maxAge: maxAge, now: time.Now}
}

// Sample returns the usage of process group pgid (a replica's pid, as each
// replica leads a group of its own), at most maxAge old. On Linux that is
// every process in the group; elsewhere, the process pgid alone. A group
// that is gone reads as zero.
func (s *Sampler) Sample(pgid int) Usage {
	if pgid <= 0 { // on Linux, 0 would be the kernel's threads
		return Usage{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.sample(pgid, s.now())
	if u.CPUPercent < 0 { // a member exited and took its CPU time along
		u.CPUPercent = 0
	}
	return u
}
