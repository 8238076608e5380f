package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/mattingctl/mattingctl/replica"
)

// parseCPUs reads --cpus for a start with replicas replicas, on the CPUs
// mattingctl may use (allowed, its own affinity mask). It returns one CPU
// set per replica slot; replica k gets set (k-1) mod len(sets), as --gpus.
//
// The value is "auto", or CPU sets separated by commas, each CPU numbers
// and ranges joined by "+": "0-3,4-7" gives replica 1 CPUs 0-3 and
// replica 2 CPUs 4-7; "0-1+8-9,2-3+10-11" gives each two cores and their
// hyperthreads. A comma separates replicas, as it separates GPUs in
// --gpus, so a taskset list of one replica ("0-3,8-11") is written with
// "+" here ("0-3+8-11").
//
// auto splits allowed evenly (sets of equal size, the first ones one CPU
// larger when it does not divide), keeping a core's hyperthreads in one
// set; with more replicas than CPUs each replica gets one CPU, round robin.
func parseCPUs(s string, replicas int, allowed []int) ([][]int, error) {
	if len(allowed) == 0 {
		return nil, fmt.Errorf("--cpus %s: mattingctl may run on no CPU", s)
	}
	if strings.TrimSpace(s) == "auto" {
		return autoCPUs(replicas, byCore(allowed)), nil
	}
	usage := fmt.Errorf("--cpus %q: want auto, or CPU sets separated by commas, each CPUs or ranges joined by + (0-3,4-7 or 0+2,1+3)", s)
	var sets [][]int
	for _, group := range strings.Split(s, ",") {
		var set []int
		for _, part := range strings.Split(group, "+") {
			part = strings.TrimSpace(part)
			lo, hi, isRange := strings.Cut(part, "-")
			a, err1 := strconv.Atoi(lo)
			b, err2 := a, error(nil)
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 0 || b < a || strings.HasPrefix(lo, "+") || strings.HasPrefix(hi, "+") {
				return nil, usage
			}
			for c := a; c <= b; c++ {
				if !slices.Contains(allowed, c) {
					return nil, fmt.Errorf("--cpus %s: CPU %d is not one mattingctl may use (its affinity mask is %s)", s, c, replica.FormatCPUs(allowed))
				}
				if !slices.Contains(set, c) {
					set = append(set, c)
				}
			}
		}
		slices.Sort(set)
		sets = append(sets, set)
	}
	return sets, nil
}

// autoCPUs splits cpus, in order, into min(replicas, len(cpus)) sets of
// sizes that differ by one at most.
func autoCPUs(replicas int, cpus []int) [][]int {
	n := min(replicas, len(cpus))
	sets := make([][]int, 0, n)
	size, extra := len(cpus)/n, len(cpus)%n
	for i := 0; i < n; i++ {
		k := size
		if i < extra {
			k++
		}
		set := slices.Clone(cpus[:k])
		slices.Sort(set)
		sets = append(sets, set)
		cpus = cpus[k:]
	}
	return sets
}

// coreOf returns the first CPU of cpu's core (its hyperthreads share it),
// or cpu itself when the topology cannot be read.
var coreOf = func(cpu int) int {
	b, err := os.ReadFile("/sys/devices/system/cpu/cpu" + strconv.Itoa(cpu) + "/topology/thread_siblings_list")
	if err != nil {
		return cpu
	}
	first := strings.TrimSpace(string(b))
	if i := strings.IndexAny(first, ",-"); i >= 0 {
		first = first[:i]
	}
	if c, err := strconv.Atoi(first); err == nil {
		return c
	}
	return cpu
}

// byCore orders cpus so that the hyperthreads of a core are adjacent
// (Linux numbers them apart: 0 and 8 on an 8-core machine), so that no
// two replicas get halves of one core.
func byCore(cpus []int) []int {
	cpus = slices.Clone(cpus)
	core := make(map[int]int, len(cpus))
	for _, c := range cpus {
		core[c] = coreOf(c)
	}
	slices.SortStableFunc(cpus, func(a, b int) int {
		if core[a] != core[b] {
			return core[a] - core[b]
		}
		return a - b
	})
	return cpus
}

// resolveCPUs turns --cpus into opts.Options.CPUs. Where CPUs cannot be
// pinned it warns, on errOut, that the flag has no effect.
func (opts *upOptions) resolveCPUs() error {
	if opts.CPUs == "" {
		return nil
	}
	if !replica.PinningSupported {
		fmt.Fprintf(opts.ErrOut, "mattingctl: warning: --cpus has no effect on this system: pinning replicas to CPUs needs Linux's sched_setaffinity\n")
		opts.Options.CPUs = nil
		return nil
	}
	allowed, err := replica.AllowedCPUs()
	if err != nil {
		return fmt.Errorf("--cpus: %w", err)
	}
	sets, err := parseCPUs(opts.CPUs, opts.MostReplicas(), allowed)
	if err != nil {
		return err
	}
	opts.Options.CPUs = sets
	return nil
}

// splitAutoCPUs shares mattingctl's CPUs out among the services with
// --cpus auto, by weightOf (their most replicas as the file gives them),
// each getting at least one: their --cpus becomes their share as a set per
// replica (auto within it). With fewer CPUs than such services, they
// share them, round robin.
func splitAutoCPUs(services []upOptions, weightOf []int) error {
	var auto []*upOptions
	var weights []int
	for i := range services {
		if strings.TrimSpace(services[i].CPUs) == "auto" {
			auto, weights = append(auto, &services[i]), append(weights, weightOf[i])
		}
	}
	if len(auto) == 0 || !replica.PinningSupported {
		return nil // resolveCPUs warns, without pinning
	}
	allowed, err := replica.AllowedCPUs()
	if err != nil {
		return fmt.Errorf("--cpus: %w", err)
	}
	cpus := byCore(allowed)
	for i, share := range shareOut(len(cpus), weights) {
		var sets []string
		for _, set := range autoCPUs(auto[i].MostReplicas(), share.of(cpus)) {
			sets = append(sets, joinCPUs(set))
		}
		auto[i].CPUs = strings.Join(sets, ",")
	}
	return nil
}

// cpuShare is a run of CPUs, by index into the list shared out.
type cpuShare struct{ from, n int }

func (c cpuShare) of(cpus []int) []int { return cpus[c.from : c.from+c.n] }

// shareOut splits n CPUs into len(weights) runs in proportion to weights,
// each at least one CPU, what rounding leaves going to the largest
// weights first; with fewer CPUs than
// weights, run i is CPU i mod n alone.
func shareOut(n int, weights []int) []cpuShare {
	out := make([]cpuShare, len(weights))
	if n < len(weights) {
		for i := range out {
			out[i] = cpuShare{i % n, 1}
		}
		return out
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	counts := make([]int, len(weights))
	left := n
	for i, w := range weights {
		counts[i] = max(1, n*w/total)
		left -= counts[i]
	}
	// What rounding left over goes to the largest weights first; what the
	// floor of one CPU each took too many comes back from them too.
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return weights[b] - weights[a] })
	for k := 0; left > 0; k++ {
		counts[order[k%len(order)]]++
		left--
	}
	for k := 0; left < 0; k++ {
		if i := order[k%len(order)]; counts[i] > 1 {
			counts[i]--
			left++
		}
	}
	from := 0
	for i, c := range counts {
		out[i] = cpuShare{from, c}
		from += c
	}
	return out
}

// joinCPUs writes a CPU set as --cpus takes one: CPUs joined by +.
func joinCPUs(set []int) string {
	parts := make([]string, len(set))
	for i, c := range set {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, "+")
}
