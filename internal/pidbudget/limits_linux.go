package pidbudget

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// raiseCgroup says how to raise a cgroup's pids.max, by what usually set it.
const raiseCgroup = "systemd TasksMax=, docker or podman --pids-limit, the kubelet's podPidsLimit, or a higher number in its pids.max"

// raiseNproc says how to raise RLIMIT_NPROC.
const raiseNproc = "ulimit -u, systemd LimitNPROC=, or nproc in /etc/security/limits.conf"

// Limits returns every limit on tasks that applies to mattingctl now, with
// what is in use: pids.max of its cgroup and of each ancestor, on cgroup
// v2 or on the v1 pids hierarchy, and RLIMIT_NPROC for a user other than
// root (who is exempt). A limit that cannot be read is left out.
func Limits() []Limit { return system{root: "/"}.limits() }

// system reads limits from the file system rooted at root, so that tests
// can give it a fake /proc and /sys.
type system struct {
	root string
	// euid, ruid and nproc stand in for the process's own in tests; nil
	// means the real ones.
	ids func() (euid, ruid int)
	// nproc returns the soft RLIMIT_NPROC and whether one is set.
	nproc func() (uint64, bool)
}

func (s system) path(p string) string { return filepath.Join(s.root, p) }

func (s system) limits() []Limit {
	var out []Limit
	for _, dir := range s.pidsCgroups() {
		out = append(out, s.cgroupLimits(dir)...)
	}
	if l, ok := s.nprocLimit(); ok {
		out = append(out, l)
	}
	return out
}

// pidsCgroups returns the directories of mattingctl's own cgroups where a
// pids controller may apply: its cgroup v2, and its cgroup in a v1
// hierarchy with the pids controller, with the mount point each is under.
func (s system) pidsCgroups() []mounted {
	b, err := os.ReadFile(s.path("/proc/self/cgroup"))
	if err != nil {
		return nil
	}
	mounts := s.cgroupMounts()
	var out []mounted
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// ID:CONTROLLERS:PATH; cgroup v2 is "0::PATH".
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		key := ""
		switch {
		case f[0] == "0" && f[1] == "":
			key = "cgroup2"
		case hasController(f[1], "pids"):
			key = "pids"
		default:
			continue
		}
		m, ok := mounts[key]
		if !ok {
			continue
		}
		rel, err := filepath.Rel(m.root, f[2])
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue // outside what the mount shows (a container's view)
		}
		out = append(out, mounted{mount: s.path(m.point), dir: s.path(filepath.Join(m.point, rel))})
	}
	return out
}

// mounted is a cgroup directory and the mount point it is under.
type mounted struct{ mount, dir string }

// mountInfo is a cgroup mount: where it is, and which cgroup it shows as
// its root.
type mountInfo struct{ point, root string }

// cgroupMounts finds the cgroup v2 mount ("cgroup2") and the v1 mount of
// the pids controller ("pids") in /proc/self/mountinfo.
func (s system) cgroupMounts() map[string]mountInfo {
	out := map[string]mountInfo{}
	f, err := os.Open(s.path("/proc/self/mountinfo"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 1 {
			continue
		}
		m := mountInfo{point: unescape(fields[4]), root: unescape(fields[3])}
		switch {
		case tail[0] == "cgroup2":
			if _, seen := out["cgroup2"]; !seen {
				out["cgroup2"] = m
			}
		case tail[0] == "cgroup" && len(tail) >= 3 && hasController(tail[2], "pids"):
			out["pids"] = m
		}
	}
	return out
}

// cgroupLimits reads pids.max and pids.current of c's cgroup and of each
// ancestor up to the mount point; "max" is no limit.
func (s system) cgroupLimits(c mounted) []Limit {
	var out []Limit
	for _, dir := range c.chain() {
		if l, ok := readCgroup(dir, strings.TrimPrefix(dir, s.root)); ok {
			out = append(out, l)
		}
	}
	return out
}

// chain returns c's cgroup directory and its ancestors up to the mount
// point.
func (c mounted) chain() []string {
	var out []string
	for dir := c.dir; ; dir = filepath.Dir(dir) {
		out = append(out, dir)
		if dir == c.mount || len(dir) <= len(c.mount) {
			return out
		}
	}
}

// Refused returns how many forks the pids limits of mattingctl's cgroups
// have refused so far ("max" in pids.events, summed over its cgroups and
// their ancestors). A replica that died starting while it rose did not
// fail on its own: its threads or processes did not fit.
func Refused() int64 { return system{root: "/"}.refused() }

func (s system) refused() int64 {
	var n int64
	for _, c := range s.pidsCgroups() {
		for _, dir := range c.chain() {
			b, err := os.ReadFile(filepath.Join(dir, "pids.events"))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "max "); ok {
					m, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					n += m
				}
			}
		}
	}
	return n
}

func readCgroup(dir, name string) (Limit, bool) {
	maxB, err := os.ReadFile(filepath.Join(dir, "pids.max"))
	if err != nil {
		return Limit{}, false
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(string(maxB)), 10, 64)
	if err != nil {
		return Limit{}, false // "max"
	}
	curB, err := os.ReadFile(filepath.Join(dir, "pids.current"))
	if err != nil {
		return Limit{}, false
	}
	used, err := strconv.ParseInt(strings.TrimSpace(string(curB)), 10, 64)
	if err != nil {
		return Limit{}, false
	}
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	return Limit{Name: "cgroup " + name + " pids.max", Max: limit, Used: used, Raise: raiseCgroup}, true
}

// nprocLimit is RLIMIT_NPROC for a user other than root, with the tasks of
// the real user id counted from /proc.
func (s system) nprocLimit() (Limit, bool) {
	euid, ruid := os.Geteuid(), os.Getuid()
	if s.ids != nil {
		euid, ruid = s.ids()
	}
	if euid == 0 {
		return Limit{}, false // root is exempt (CAP_SYS_RESOURCE)
	}
	soft, ok := s.softNproc()
	if !ok {
		return Limit{}, false
	}
	used, err := s.tasksOf(ruid)
	if err != nil {
		return Limit{}, false
	}
	return Limit{Name: "RLIMIT_NPROC (ulimit -u) of uid " + strconv.Itoa(ruid), Max: int64(min(soft, 1<<62)), Used: used, Raise: raiseNproc}, true
}

func (s system) softNproc() (uint64, bool) {
	if s.nproc != nil {
		return s.nproc()
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return 0, false
	}
	return lim.Cur, true
}

// tasksOf counts the threads of every process whose real user id is uid.
func (s system) tasksOf(uid int) (int64, error) {
	d, err := os.Open(s.path("/proc"))
	if err != nil {
		return 0, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, err
	}
	want := strconv.Itoa(uid)
	var n int64
	for _, name := range names {
		if _, err := strconv.Atoi(name); err != nil {
			continue
		}
		b, err := os.ReadFile(s.path("/proc/" + name + "/status"))
		if err != nil {
			continue // gone meanwhile
		}
		var real string
		threads := int64(0)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					real = f[0]
				}
			}
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				threads, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
		if real == want {
			n += max(threads, 1)
		}
	}
	if n == 0 {
		return 0, errors.New("no process of the user found in /proc")
	}
	return n, nil
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
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
