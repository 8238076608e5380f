package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat. The kernel
// reports them in USER_HZ, which is 100 a second on every architecture
// Go runs Linux on, whatever the kernel's own HZ (`getconf CLK_TCK`).
const clockTick = 10 * time.Millisecond

// procStat is what the bench reads from one line of /proc/PID/stat.
type procStat struct {
	ppid int           // field 4
	cpu  time.Duration // utime + stime, fields 14 and 15
	user time.Duration // utime alone
}

// parseProcStat parses a /proc/PID/stat line. The command name (field 2)
// is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseProcStat(line string) (procStat, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return procStat{}, errors.New("no ')' after the command name")
	}
	// f[0] is field 3 (the state), so field n is f[n-3].
	f := strings.Fields(line[i+1:])
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("ppid: %w", err)
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stime: %w", err)
	}
	return procStat{ppid: ppid, cpu: time.Duration(utime+stime) * clockTick, user: time.Duration(utime) * clockTick}, nil
}
