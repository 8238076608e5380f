package replica

import (
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// tree is one replica process and what it starts, as the tracker knows it.
type tree struct {
	t      *Tracker
	cgroup string // its leaf cgroup; "" when it has none
	fd     int    // the leaf cgroup, open for clone3, until started
	rec    groupRecord
}

// prepare readies attr so that a process of replica name starts in a leaf
// cgroup of its own, when the tracker uses cgroups. A nil tracker returns
// a nil tree, whose methods do nothing.
func (t *Tracker) prepare(name string, attr *syscall.SysProcAttr) *tree {
	if t == nil {
		return nil
	}
	tr := &tree{t: t, fd: -1}
	t.mu.Lock()
	t.seq++
	cg, leaf := t.cgroup, name+"-"+strconv.Itoa(t.seq)
	t.mu.Unlock()
	if cg == "" {
		return tr
	}
	path, fd, err := newLeafCgroup(cg, leaf)
	if err != nil {
		t.log.Warn("cannot create a replica's cgroup; it runs in its process group only", "cgroup", filepath.Join(cg, leaf), "error", err)
		return tr
	}
	tr.cgroup, tr.fd = path, fd
	bornInCgroup(attr, fd)
	return tr
}

// refused is called when a process could not be started in tr's cgroup
// but could without one: cgroups are off for the rest of the instance.
func (tr *tree) refused(err error) {
	tr.closeFd()
	_ = removeCgroup(tr.cgroup)
	tr.t.mu.Lock()
	tr.t.cgroup = ""
	tr.t.mu.Unlock()
	tr.t.log.Warn("the kernel refused to start a replica in its cgroup; using process groups from now on", "cgroup", tr.cgroup, "error", err)
	tr.cgroup = ""
}

func (tr *tree) closeFd() {
	if tr != nil && tr.fd >= 0 {
		closeCgroupFd(tr.fd)
		tr.fd = -1
	}
}

// inCgroup reports whether the process is to start in a cgroup.
func (tr *tree) inCgroup() bool { return tr != nil && tr.cgroup != "" }

// started records the process pid, just started, in the state file.
func (tr *tree) started(pid int) {
	if tr == nil {
		return
	}
	tr.closeFd()
	start, err := procStart(pid)
	if err != nil && tr.cgroup == "" {
		return // gone already; its group cannot be told from a later one
	}
	tr.rec = groupRecord{Pgid: pid, Start: start, Cgroup: tr.cgroup}
	t := tr.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rec.Groups = append(t.rec.Groups, tr.rec)
	if err := t.saveLocked(); err != nil {
		t.log.Warn("recording a replica process", "pid", pid, "error", err)
	}
}

// abandon undoes prepare for a process that did not start.
func (tr *tree) abandon() {
	if tr == nil {
		return
	}
	tr.closeFd()
	if tr.cgroup != "" {
		_ = removeCgroup(tr.cgroup)
	}
}

// terminate asks every process of the tree's cgroup to stop (SIGTERM):
// those that left the process group too.
func (tr *tree) terminate() {
	if !tr.inCgroup() {
		return
	}
	for _, pid := range cgroupProcs(tr.cgroup) {
		termPid(pid)
	}
}

// kill kills every process of the tree's cgroup at once.
func (tr *tree) kill() {
	if tr.inCgroup() {
		_ = killCgroup(tr.cgroup)
	}
}

// finish waits, a bounded time, until the tree's processes are gone (its
// leader has been waited for), then removes its cgroup and its record.
func (tr *tree) finish() error {
	if tr == nil || tr.rec.Pgid == 0 {
		return nil
	}
	deadline := time.Now().Add(killWait)
	gone := func() bool {
		if tr.cgroup != "" {
			return !cgroupPopulated(tr.cgroup)
		}
		// Members forked after the group was killed are killed too.
		sweepGroup(tr.rec, deadline)
		return len(liveMembers(tr.rec)) == 0
	}
	for !gone() {
		if time.Now().After(deadline) {
			return fmt.Errorf("processes started by pid %d still run %s after SIGKILL", tr.rec.Pgid, killWait)
		}
		time.Sleep(killPoll)
	}
	if tr.cgroup != "" {
		if err := removeCgroup(tr.cgroup); err != nil {
			tr.t.log.Warn("removing a replica's cgroup", "error", err)
		}
	}
	t := tr.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, g := range t.rec.Groups {
		if g == tr.rec {
			t.rec.Groups = append(t.rec.Groups[:i], t.rec.Groups[i+1:]...)
			break
		}
	}
	if err := t.saveLocked(); err != nil {
		t.log.Warn("updating the state file", "error", err)
	}
	return nil
}
