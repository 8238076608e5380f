package replica

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procInfo is what the sweep needs to know of one process.
type procInfo struct {
	pid   int
	start int64 // procStart's value
}

// procStart returns when pid started, as a number that differs for a later
// process that reuses pid: on Linux the starttime field of /proc/PID/stat,
// in clock ticks after boot. A zombie counts as gone.
func procStart(pid int) (int64, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	if st.zombie {
		return 0, errGone
	}
	return st.start, nil
}

// groupMembers returns the live (not zombie) processes whose process group
// is pgid.
func groupMembers(pgid int) []procInfo {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var out []procInfo
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.zombie || st.pgrp != pgid {
			continue
		}
		out = append(out, procInfo{pid: pid, start: st.start})
	}
	return out
}

// bootID names the current boot, so that a state file written before a
// reboot is not read as describing processes of this one.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

var errGone = errors.New("no such process")

type procStat struct {
	zombie bool
	pgrp   int
	start  int64
}

// readStat reads the fields of /proc/PID/stat the sweep uses. The command
// name, in parentheses, may itself hold spaces and parentheses: the fields
// are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, errGone
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	// After ")": state(3) ppid(4) pgrp(5) ... starttime(22).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	pgrp, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseInt(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return procStat{zombie: f[0] == "Z" || f[0] == "X", pgrp: pgrp, start: start}, nil
}
