// Package tune finds the fastest layout of a model server on this
// machine: how many replicas, how the CPUs are shared out among them, and
// how many requests each takes in flight. It runs candidate layouts one
// after another through a Runner, measures each at saturation, prunes the
// in-flight values that stop paying, and chooses the best by one stated
// rule. What starts the replicas is the Runner's business (the command
// runs the supervisor in-process); what is pure here (the candidates, the
// pruning, the choice, the `up` line) is tested without a process.
package tune

import (
	"fmt"
	"strconv"
	"strings"
)

// Shape is how the CPUs are shared out: Replicas replicas, each pinned to
// CPUsEach CPUs of its own, or, when Shared, more replicas than CPUs, one
// CPU each, round robin.
type Shape struct {
	Replicas int
	CPUsEach int
	Shared   bool
	// CPUs is the --cpus value that pins them so, as `up` takes it: sets
	// for replica 1, 2, ... separated by commas. Empty means not pinned
	// (the system cannot pin).
	CPUs string
}

// String names the shape as the table shows it: "2x1" (two replicas of
// one CPU each), "4x1 shared".
func (s Shape) String() string {
	if s.CPUsEach == 0 {
		return fmt.Sprintf("%dx-", s.Replicas)
	}
	str := fmt.Sprintf("%dx%d", s.Replicas, s.CPUsEach)
	if s.Shared {
		str += " shared"
	}
	return str
}

// Auto is Layout.Inflight for `--max-inflight auto`: each replica learns
// its own cap.
const Auto = 0

// Layout is one candidate: a shape and the requests in flight per
// replica (a fixed cap, or Auto).
type Layout struct {
	Shape
	Inflight int
}

// InflightString is the --max-inflight value: a number, or auto.
func (l Layout) InflightString() string {
	if l.Inflight == Auto {
		return "auto"
	}
	return strconv.Itoa(l.Inflight)
}

// String names the layout: "2x1 inflight 4".
func (l Layout) String() string {
	return l.Shape.String() + " inflight " + l.InflightString()
}

// ReplicaCounts are the replica counts tried on a machine with cpus CPUs:
// the powers of two up to cpus, cpus itself, and twice cpus (replicas
// sharing CPUs, for servers that wait on something other than the CPU),
// ascending. Memory is not known before a replica has run; the sweep
// drops the counts that would not fit once it has measured one
// (Config.MemAvailable).
func ReplicaCounts(cpus int) []int {
	if cpus < 1 {
		cpus = 1
	}
	var counts []int
	for n := 1; n < cpus; n *= 2 {
		counts = append(counts, n)
	}
	return append(counts, cpus, 2*cpus)
}

// DefaultInflights are the fixed in-flight values tried, ascending, up to
// auto's default upper bound; the sweep stops growing them once they stop
// paying (Prune).
var DefaultInflights = []int{1, 2, 4, 8, 16, 32, 64}

// UpLine is the `mattingctl up` command line that runs l: the replicas,
// their CPUs and in-flight cap, then extra (flags the sweep passed on to
// every layout, such as --health), then the command.
func UpLine(l Layout, extra, command []string) string {
	args := []string{"mattingctl", "up", "--replicas", strconv.Itoa(l.Replicas)}
	if l.CPUs != "" {
		args = append(args, "--cpus", l.CPUs)
	}
	args = append(args, "--max-inflight", l.InflightString())
	args = append(args, extra...)
	args = append(args, "--")
	args = append(args, command...)
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return strings.Join(quoted, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it, so that the
// line can be pasted as it is.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
