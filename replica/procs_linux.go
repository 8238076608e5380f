package replica

import (
	"errors"
	"strings"
	"sync"

	"github.com/prometheus/procfs"
)

// procFS is /proc, read through prometheus/procfs; its error says why
// /proc cannot be read (it is not mounted).
var procFS = sync.OnceValues(procfs.NewDefaultFS)

// procInfo is what the sweep needs to know of one process.
type procInfo struct {
	pid   int
	start int64 // procStart's value
}

// procStart returns when pid started, as a number that differs for a later
// process that reuses pid: on Linux the starttime field of /proc/PID/stat,
// in clock ticks after boot. A zombie counts as gone.
func procStart(pid int) (int64, error) {
	fs, err := procFS()
	if err != nil {
		return 0, err
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return 0, errGone
	}
	st, err := p.Stat()
	if err != nil {
		return 0, errGone
	}
	if dead(st) {
		return 0, errGone
	}
	return int64(st.Starttime), nil
}

// groupMembers returns the live (not zombie) processes whose process group
// is pgid.
func groupMembers(pgid int) []procInfo {
	fs, err := procFS()
	if err != nil {
		return nil
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return nil
	}
	var out []procInfo
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil || dead(st) || st.PGRP != pgid {
			continue // gone meanwhile, or another group's
		}
		out = append(out, procInfo{pid: p.PID, start: int64(st.Starttime)})
	}
	return out
}

// dead reports whether st is of a process that has exited: a zombie, or
// one being reaped.
func dead(st procfs.ProcStat) bool { return st.State == "Z" || st.State == "X" }

// bootID names the current boot, so that a state file written before a
// reboot is not read as describing processes of this one.
func bootID() string {
	fs, err := procFS()
	if err != nil {
		return ""
	}
	id, err := fs.SysctlStrings("kernel.random.boot_id")
	if err != nil || len(id) != 1 {
		return ""
	}
	return strings.TrimSpace(id[0])
}

var errGone = errors.New("no such process")
