package replica

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// Containment in a cgroup v2: the instance gets a cgroup of its own,
// created under mattingctl's own cgroup (so that whatever manages
// mattingctl, a systemd unit say, still holds its replicas), and every
// replica process is born (clone3 with CLONE_INTO_CGROUP) into a leaf
// cgroup below it. cgroup.kill then kills everything a replica started, at
// any depth, whatever process group or session it moved to. No controller
// is ever enabled in these cgroups, so cgroup v2's "no internal processes"
// rule cannot refuse a replica; only the leaves hold processes anyway.

// cgroup2Magic is CGROUP2_SUPER_MAGIC, the f_type of a cgroup v2 file system.
const cgroup2Magic = 0x63677270

// instanceSeq tells apart the instances one process runs (tests do).
var instanceSeq atomic.Int64

// newInstanceCgroup creates the instance's cgroup, named
// mattingctl-NAME.PID.START.N after the supervisor's pid and start time, so
// that instances of one name in different state directories never share
// one and a dead instance's cgroup can be told from a live one's; or it
// says why it cannot.
func newInstanceCgroup(name string) (string, error) {
	if os.Getenv(cgroupEnv) == "off" {
		return "", errors.New(cgroupEnv + "=off")
	}
	parent, err := ownCgroupDir()
	if err != nil {
		return "", err
	}
	tidyCgroups(parent)
	start, err := procStart(os.Getpid())
	if err != nil {
		return "", err
	}
	dir := filepath.Join(parent, fmt.Sprintf("mattingctl-%s.%d.%d.%d", name, os.Getpid(), start, instanceSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("cannot create a cgroup under %s (no delegation?): %w", parent, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		_ = syscall.Rmdir(dir)
		return "", errors.New("this kernel's cgroups have no cgroup.kill (it needs Linux 5.14 or later)")
	}
	return dir, nil
}

// tidyCgroups removes the empty cgroups that instances killed with SIGKILL
// left in parent, when no later instance of their name swept them. A
// cgroup that still holds processes is left alone: only the next instance
// of its name, which has its state file, may kill them.
func tidyCgroups(parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "mattingctl-") {
			continue
		}
		f := strings.Split(e.Name(), ".")
		if len(f) < 4 {
			continue
		}
		pid, err1 := strconv.Atoi(f[len(f)-3])
		start, err2 := strconv.ParseInt(f[len(f)-2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if now, err := procStart(pid); err == nil && now == start {
			continue // its instance runs
		}
		if dir := filepath.Join(parent, e.Name()); !cgroupPopulated(dir) {
			_ = removeCgroup(dir)
		}
	}
}

// ownCgroupDir returns the directory of mattingctl's own cgroup v2.
func ownCgroupDir() (string, error) {
	mount, root, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	pfs, err := procFS()
	if err != nil {
		return "", err
	}
	self, err := pfs.Self()
	if err != nil {
		return "", err
	}
	cgroups, err := self.Cgroups()
	if err != nil {
		return "", err
	}
	for _, cg := range cgroups {
		if cg.HierarchyID != 0 || len(cg.Controllers) != 0 {
			continue // a v1 hierarchy
		}
		// The mount may show a subtree only (a container's bind mount).
		rel, err := filepath.Rel(root, cg.Path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("our cgroup %s is outside the cgroup2 mount at %s", cg.Path, mount)
		}
		return filepath.Join(mount, rel), nil
	}
	return "", errors.New("no cgroup v2 (only v1 hierarchies in /proc/self/cgroup)")
}

// cgroup2Mount returns where the cgroup v2 file system is mounted, and
// which of its directories that mount shows as its root.
func cgroup2Mount() (mount, root string, err error) {
	pfs, err := procFS()
	if err != nil {
		return "", "", err
	}
	mounts, err := pfs.GetMounts()
	if err != nil {
		return "", "", err
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			return unescapeMount(m.MountPoint), unescapeMount(m.Root), nil
		}
	}
	return "", "", errors.New("no cgroup v2 file system is mounted")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// newLeafCgroup creates the cgroup dir/leaf for one replica process and
// opens it for clone3.
func newLeafCgroup(dir, leaf string) (path string, fd int, err error) {
	path = filepath.Join(dir, leaf)
	if err := os.Mkdir(path, 0o755); err != nil {
		return "", -1, err
	}
	fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		_ = syscall.Rmdir(path)
		return "", -1, err
	}
	return path, fd, nil
}

// bornInCgroup makes the child start in the cgroup open as fd.
func bornInCgroup(attr *syscall.SysProcAttr, fd int) {
	attr.UseCgroupFD = true
	attr.CgroupFD = fd
}

// isCgroup reports whether dir is a directory of a cgroup v2 file system,
// so that a path read from a state file is never written to otherwise.
func isCgroup(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == cgroup2Magic
}

// killCgroup kills every process in dir and its descendants.
func killCgroup(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
}

// cgroupPopulated reports whether any live process is in dir or below it.
// A cgroup that is gone is empty.
func cgroupPopulated(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false
	}
	return strings.Contains(string(b), "populated 1")
}

// cgroupProcs lists the processes directly in dir.
func cgroupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroup removes dir and any cgroups a replica made below it, which
// must be empty of processes.
func removeCgroup(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = removeCgroup(filepath.Join(dir, e.Name()))
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing cgroup %s: %w", dir, err)
	}
	return nil
}

func closeCgroupFd(fd int) { _ = syscall.Close(fd) }
