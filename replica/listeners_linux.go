package replica

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// look returns the TCP sockets that the process, and every process of its
// group and of its cgroup, listen on, sorted by port (the sockets among
// their descriptors, /proc/PID/fd, found listening in the network
// namespace's tables, /proc/PID/net/tcp and tcp6), and the CPU time those
// processes have used.
func (p *Process) look() treeLook {
	owners := map[uint64]int{} // socket inode -> a pid holding it
	pids := p.treePids()
	for _, pid := range pids {
		socketInodes(pid, owners)
	}
	l := treeLook{cpu: treeCPU(pids)}
	if len(owners) == 0 {
		return l
	}
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", p.Pid(), table))
		if err != nil {
			continue // gone, or no IPv6
		}
		l.socks = append(l.socks, parseListening(string(b), owners)...)
	}
	slices.SortFunc(l.socks, func(a, b listenSocket) int { return int(a.Addr.Port()) - int(b.Addr.Port()) })
	return l
}

// treeCPU is the CPU time, user and system, that pids have used.
func treeCPU(pids []int) time.Duration {
	fs, err := procFS()
	if err != nil {
		return 0
	}
	var secs float64
	for _, pid := range pids {
		if proc, err := fs.Proc(pid); err == nil {
			if st, err := proc.Stat(); err == nil {
				secs += st.CPUTime()
			}
		}
	}
	return time.Duration(secs * float64(time.Second))
}

// treePids returns the process and the live members of its process group
// and of its cgroup.
func (p *Process) treePids() []int {
	pids := []int{p.Pid()}
	for _, m := range groupMembers(p.Pid()) {
		if !slices.Contains(pids, m.pid) {
			pids = append(pids, m.pid)
		}
	}
	if p.tree.inCgroup() {
		for _, pid := range cgroupProcs(p.tree.cgroup) {
			if !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// socketInodes adds the inodes of the sockets among pid's descriptors to
// owners, as held by pid unless another holds them already.
func socketInodes(pid int, owners map[uint64]int) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // gone, or not ours to read
	}
	for _, e := range entries {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		inode, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(inode, "]"), 10, 64)
		if err != nil {
			continue
		}
		if _, held := owners[n]; !held {
			owners[n] = pid
		}
	}
}
