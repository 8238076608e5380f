package replica

import (
	"bytes"
	"os"
	"strconv"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: fixed at 100 in
// Linux's user-space ABI.
const userHZ = 100

// groupUsage sums the CPU time (seconds) and resident memory (bytes) of
// every process in process group pgid: a replica and whatever it forked
// (gunicorn's workers, a DataLoader's processes), since each replica leads
// a group of its own. found is false when no member is left.
func groupUsage(pgid int) (cpuSecs float64, rss uint64, found bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, false
	}
	page := uint64(os.Getpagesize())
	for _, e := range entries {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// The command name is in parentheses and may hold spaces; the
		// fields after it are space-separated: state is field 3.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 > len(b) {
			continue
		}
		f := bytes.Fields(b[i+2:])
		// f[0]=state(3) f[2]=pgrp(5) f[11]=utime(14) f[12]=stime(15) f[21]=rss(24)
		if len(f) < 22 {
			continue
		}
		if g, _ := strconv.Atoi(string(f[2])); g != pgid {
			continue
		}
		found = true
		ut, _ := strconv.ParseUint(string(f[11]), 10, 64)
		st, _ := strconv.ParseUint(string(f[12]), 10, 64)
		pages, _ := strconv.ParseUint(string(f[21]), 10, 64)
		cpuSecs += float64(ut+st) / userHZ
		rss += pages * page
	}
	return cpuSecs, rss, found
}
