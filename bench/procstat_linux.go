package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// readProcStat reads and parses /proc/PID/stat.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	st, err := parseProcStat(string(b))
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// procTree is pid and every process descended from it, found by the
// PPid of every process in /proc. Threads are not listed there, and need
// not be: a process's stat counts all of its threads.
func procTree(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(p)
		if err != nil {
			continue // it exited since the listing
		}
		children[st.ppid] = append(children[st.ppid], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// procCPU is the CPU time, user and system, that the processes pids have
// used so far, and the user part of it. All of them must still be
// running: one that has exited has taken its CPU time with it.
func procCPU(pids []int) (cpu, user time.Duration, err error) {
	for _, p := range pids {
		st, err := readProcStat(p)
		if err != nil {
			return 0, 0, err
		}
		cpu += st.cpu
		user += st.user
	}
	return cpu, user, nil
}
