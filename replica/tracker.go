package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// killWait bounds each wait for killed processes to be gone: at a sweep,
// after a replica's process ends, and at Close.
const killWait = 5 * time.Second

// killPoll is how often such a wait looks again.
const killPoll = 10 * time.Millisecond

// cgroupEnv turns cgroups off when set to "off", for hosts where they
// misbehave and for the tests of the fallback.
const cgroupEnv = "MATTINGCTL_CGROUP"

// Tracker sees to it that no process an instance started, at any depth,
// outlives the instance. Where Linux lets it create a cgroup v2 it puts each
// replica process in a cgroup of its own and kills that cgroup
// (cgroup.kill) when the process ends; a process that calls setsid stays
// inside. Elsewhere it kills the replica's process group. Either way it
// keeps a state file, NAME.procs.json next to the control socket, of what it
// started (the cgroup, and every process group with its leader's start
// time), so that when the supervisor itself was killed with SIGKILL the
// next instance of the same name kills the leftovers before it binds its
// ports (OpenTracker) and never kills a process that merely reuses a
// recorded pid. Its methods are safe for concurrent use.
type Tracker struct {
	path string
	log  hclog.Logger

	mu     sync.Mutex  // guards the fields below and writes of the state file
	rec    stateRecord // what the state file says
	cgroup string      // the instance's cgroup; "" when process groups are all there is
	seq    int         // numbers the leaf cgroups
}

// stateRecord is the content of a state file.
type stateRecord struct {
	// Pid and Start identify the supervisor that wrote the file.
	Pid   int   `json:"pid"`
	Start int64 `json:"start"`
	// Boot names the boot the file was written in (Linux); after a reboot
	// nothing it lists is running.
	Boot string `json:"boot,omitempty"`
	// Cgroup is the instance's cgroup, when it has one.
	Cgroup string        `json:"cgroup,omitempty"`
	Groups []groupRecord `json:"groups"`
}

// groupRecord is one replica process: its process group (the pid of its
// leader, the process the supervisor started), the leader's start time as
// procStart gives it, and its leaf cgroup, if any.
type groupRecord struct {
	Pgid   int    `json:"pgid"`
	Start  int64  `json:"start"`
	Cgroup string `json:"cgroup,omitempty"`
}

// StatePath is where the tracker of instance name in dir keeps its record.
func StatePath(dir, name string) string { return filepath.Join(dir, name+".procs.json") }

// OpenTracker first sweeps what a dead instance of the same name in dir
// left running, as its state file lists it, then sets up containment for
// this one: a cgroup where one can be created (it logs which applies, and
// why not), and a state file of its own. The caller must hold the
// instance's name (its control socket) so that no live instance's record
// is swept. A nil log means none.
func OpenTracker(dir, name string, log hclog.Logger) (*Tracker, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	t := &Tracker{path: StatePath(dir, name), log: log}
	if err := t.sweepDead(); err != nil {
		return nil, err
	}
	self, _ := procStart(os.Getpid())
	t.rec = stateRecord{Pid: os.Getpid(), Start: self, Boot: bootID()}
	if cg, err := newInstanceCgroup(name); err != nil {
		log.Info("no cgroup for the replicas; using process groups (a process that leaves its group, with setsid, can outlive the instance)", "reason", err.Error())
	} else {
		t.cgroup, t.rec.Cgroup = cg, cg
		log.Debug("replicas contained in a cgroup", "cgroup", cg)
	}
	t.mu.Lock()
	err := t.saveLocked()
	t.mu.Unlock()
	if err != nil {
		if t.cgroup != "" {
			_ = removeCgroup(t.cgroup)
		}
		return nil, err
	}
	return t, nil
}

// Cgroup returns the instance's cgroup, or "" when it uses process groups.
func (t *Tracker) Cgroup() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cgroup
}

// sweepDead kills what the state file at t.path lists and removes the file.
func (t *Tracker) sweepDead() error {
	rec, err := loadState(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if errors.Is(err, errBadState) {
		t.log.Warn("state file unreadable; nothing swept from it", "file", t.path, "error", err)
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Boot != "" && rec.Boot != bootID() {
		return nil // written before a reboot: nothing of it runs
	}
	if start, err := procStart(rec.Pid); err == nil && start == rec.Start && rec.Pid != os.Getpid() {
		return fmt.Errorf("the instance that wrote %s (pid %d) is still running without its control socket; stop it (kill %d) first", t.path, rec.Pid, rec.Pid)
	}
	began := time.Now()
	if killed := sweepRecord(rec, t.log); killed > 0 {
		t.log.Warn("killed processes left by a dead instance of this name", "processes", killed, "took", time.Since(began).Round(time.Millisecond), "cgroup", rec.Cgroup)
	}
	return nil
}

var errBadState = errors.New("not a state file")

// loadState reads and decodes the state file at path.
func loadState(path string) (stateRecord, error) {
	var rec stateRecord
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return rec, err
		}
		return rec, fmt.Errorf("reading state file %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("%w: %w", errBadState, err)
	}
	return rec, nil
}

// sweepRecord kills, within killWait, every process that rec lists: its
// cgroup, and its process groups as sweepGroup does; and returns how many
// it killed.
func sweepRecord(rec stateRecord, log hclog.Logger) int {
	deadline := time.Now().Add(killWait)
	killed := 0
	if cg := rec.Cgroup; cg != "" && strings.HasPrefix(filepath.Base(cg), "mattingctl-") && isCgroup(cg) {
		killed += killCgroupWait(cg, deadline, log)
	}
	for _, g := range rec.Groups {
		killed += sweepGroup(g, deadline)
	}
	return killed
}

// killCgroupWait kills cgroup dir, waits until deadline for it to empty,
// removes it and returns how many processes it held.
func killCgroupWait(dir string, deadline time.Time, log hclog.Logger) int {
	n := countCgroupProcs(dir)
	if err := killCgroup(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("killing cgroup", "cgroup", dir, "error", err)
	}
	for cgroupPopulated(dir) && time.Now().Before(deadline) {
		time.Sleep(killPoll)
	}
	if err := removeCgroup(dir); err != nil {
		log.Warn("removing cgroup", "cgroup", dir, "error", err)
	}
	return n
}

// countCgroupProcs counts the processes in dir and below.
func countCgroupProcs(dir string) int {
	n := len(cgroupProcs(dir))
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			n += countCgroupProcs(filepath.Join(dir, e.Name()))
		}
	}
	return n
}

// sweepGroup kills, until deadline, the members of the recorded process
// group g and returns how many it killed. If g's leader is alive but
// started at another time than recorded, the id now names another group
// and nothing is killed. A member that started before the recorded leader
// cannot belong to its group and is spared. With the leader gone, the
// members left are its descendants: a process group id cannot be reused
// while any process is in that group.
func sweepGroup(g groupRecord, deadline time.Time) int {
	killed := map[int]bool{}
	for {
		var targets []int
		for _, m := range groupMembers(g.Pgid) {
			if m.pid == g.Pgid && m.start != g.Start {
				return len(killed)
			}
			if m.start >= g.Start {
				targets = append(targets, m.pid)
			}
		}
		if len(targets) == 0 || time.Now().After(deadline) {
			return len(killed)
		}
		for _, pid := range targets {
			killPid(pid)
			killed[pid] = true
		}
		time.Sleep(killPoll)
	}
}

// Close kills whatever the instance started that is still running, removes
// its cgroup and, when nothing is left, its state file.
func (t *Tracker) Close() error {
	t.mu.Lock()
	groups := append([]groupRecord(nil), t.rec.Groups...)
	cg := t.rec.Cgroup
	t.mu.Unlock()
	deadline := time.Now().Add(killWait)
	if cg != "" {
		killCgroupWait(cg, deadline, t.log)
	}
	for _, g := range groups {
		sweepGroup(g, deadline)
	}
	left := cg != "" && cgroupPopulated(cg)
	for _, g := range groups {
		if len(liveMembers(g)) > 0 {
			left = true
		}
	}
	if left {
		return fmt.Errorf("processes of the instance still run after SIGKILL; %s lists them for the next start", t.path)
	}
	if err := os.Remove(t.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing state file: %w", err)
	}
	return nil
}

// liveMembers returns the processes of g's group that the sweep would kill.
func liveMembers(g groupRecord) []int {
	var out []int
	for _, m := range groupMembers(g.Pgid) {
		if m.pid == g.Pgid && m.start != g.Start {
			return nil
		}
		if m.start >= g.Start {
			out = append(out, m.pid)
		}
	}
	return out
}

// saveLocked writes the record to the state file, atomically. t.mu is held.
func (t *Tracker) saveLocked() error {
	b, err := json.Marshal(t.rec)
	if err != nil {
		return err
	}
	tmp := t.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	if err := os.Rename(tmp, t.path); err != nil {
		return fmt.Errorf("writing state file: %w", err)
	}
	return nil
}
