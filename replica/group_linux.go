package replica

import (
	"time"

	"github.com/prometheus/procfs"
)

// userHZ is the unit of the start time in /proc/PID/stat: fixed at 100 in
// Linux's user-space ABI (procfs's CPUTime assumes it too).
const userHZ = 100

// group is what one scan found of one process group: a replica and
// whatever it forked (gunicorn's workers, a DataLoader's processes).
type group struct {
	cpuSecs float64 // user and system CPU time of its members, seconds
	rss     uint64  // resident memory of its members, bytes
	tasks   int     // threads of its members
	// start is when the leader started, in clock ticks after boot; 0
	// when the scan did not see the leader.
	start uint64
	// seen says the previous scan found the group too, with prevSecs
	// of CPU time.
	seen     bool
	prevSecs float64
}

// samplerState is the latest scan of every process group and what came
// before it.
type samplerState struct {
	fs     procfs.FS
	fsErr  error          // why /proc could not be opened, once tried
	groups map[int]*group // by pgid; nil before the first scan
	at     time.Time      // when groups was scanned
	prevAt time.Time      // when the scan before it was
	boot   float64        // boot time, Unix seconds; 0 until needed
}

// sample answers from the latest scan, scanning again first when that is
// maxAge old. s.mu is held.
func (s *Sampler) sample(pgid int, now time.Time) Usage {
	st := &s.state
	if st.groups == nil || now.Sub(st.at) >= s.maxAge {
		s.scan(now)
	}
	g, ok := st.groups[pgid]
	if !ok {
		return Usage{}
	}
	u := Usage{RSSBytes: g.rss, Tasks: g.tasks}
	switch {
	case g.seen:
		if dt := st.at.Sub(st.prevAt).Seconds(); dt > 0 {
			u.CPUPercent = 100 * (g.cpuSecs - g.prevSecs) / dt
		}
	case g.start > 0: // first seen now: its average over the leader's life
		if st.boot == 0 {
			if stat, err := st.fs.Stat(); err == nil {
				st.boot = float64(stat.BootTime)
			}
		}
		started := st.boot + float64(g.start)/userHZ
		if life := float64(st.at.UnixNano())/1e9 - started; st.boot > 0 && life > 0 {
			u.CPUPercent = 100 * g.cpuSecs / life
		}
	}
	return u
}

// scan reads every process in /proc once and sums CPU time and resident
// memory by process group, replacing the previous scan; groups it does not
// find are forgotten. s.mu is held.
func (s *Sampler) scan(now time.Time) {
	st := &s.state
	s.scans++
	if st.fsErr == nil && st.groups == nil {
		st.fs, st.fsErr = procFS()
	}
	next := make(map[int]*group, len(st.groups))
	var procs procfs.Procs
	if st.fsErr == nil {
		procs, _ = st.fs.AllProcs() // none readable: every group reads zero
	}
	for _, p := range procs {
		ps, err := p.Stat()
		if err != nil {
			continue // gone meanwhile
		}
		g := next[ps.PGRP]
		if g == nil {
			g = &group{}
			next[ps.PGRP] = g
		}
		g.cpuSecs += ps.CPUTime()
		g.rss += uint64(max(ps.ResidentMemory(), 0))
		g.tasks += max(ps.NumThreads, 1)
		if ps.PID == ps.PGRP {
			g.start = ps.Starttime
		}
	}
	for pgid, g := range next {
		old, ok := st.groups[pgid]
		// A leader that started at another time is a new group that
		// reused the pgid, not the one seen before.
		if ok && (old.start == 0 || g.start == 0 || old.start == g.start) {
			g.prevSecs, g.seen = old.cpuSecs, true
		}
	}
	st.groups, st.prevAt, st.at = next, st.at, now
}
