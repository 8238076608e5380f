package tune

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The finalists are the layouts without errors whose throughput, measured
// once, is within FinalBand of the top, at most MaxFinalists of them, the
// fastest. The band is twice the best rule's closeEnough: a layout a
// single noisy run put 8% below the top may be the better one, and the
// rule, applied on the medians, then decides between them.
const (
	FinalBand    = 0.10
	MaxFinalists = 3
)

// Finalists returns the indexes in results of the layouts to measure
// again after the sweep, ascending: those that ran without errors within
// FinalBand of the highest throughput, at most MaxFinalists of them, the
// fastest. It returns none when no layout ran without errors.
func Finalists(results []Result) []int {
	var ok []int
	top := 0.0
	for i, r := range results {
		if r.Errors == 0 && r.Requests > 0 {
			ok = append(ok, i)
			top = max(top, r.Throughput())
		}
	}
	var idx []int
	for _, i := range ok {
		if results[i].Throughput() >= top*(1-FinalBand) {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(results[b].Throughput(), results[a].Throughput()) })
	idx = idx[:min(len(idx), MaxFinalists)]
	slices.Sort(idx)
	return idx
}

// Combine makes one result of runs, the measurements of one layout (at
// least one): requests/s, p50 and p99 are each the median of the runs',
// and of the middle two of an even count the worse (the lower requests/s,
// the higher latency), since picking the top of noisy measurements leans
// high already; errors are the sum, memory the most, the learned caps
// the last run's. Runs is their count.
func Combine(runs []Result) Result {
	byRate := slices.Clone(runs)
	slices.SortStableFunc(byRate, func(a, b Result) int { return cmp.Compare(a.Throughput(), b.Throughput()) })
	out := byRate[(len(byRate)-1)/2] // the lower middle
	p50s, p99s := make([]time.Duration, len(runs)), make([]time.Duration, len(runs))
	out.Errors, out.FirstFail, out.RSS = 0, "", 0
	for i, r := range runs {
		p50s[i], p99s[i] = r.P50, r.P99
		out.Errors += r.Errors
		if out.FirstFail == "" {
			out.FirstFail = r.FirstFail
		}
		out.RSS = max(out.RSS, r.RSS)
	}
	slices.Sort(p50s)
	slices.Sort(p99s)
	out.P50, out.P99 = p50s[len(runs)/2], p99s[len(runs)/2] // the upper middle
	out.Limits = runs[len(runs)-1].Limits
	out.Layout, out.Clients = runs[0].Layout, runs[0].Clients
	out.Runs, out.Finalist = len(runs), runs[0].Finalist
	return out
}

// Remeasure is what the re-measure after the sweep did.
type Remeasure struct {
	// Layouts are the finalists, in the order each round ran them.
	Layouts []Layout
	// Runs are how many times each of Layouts was measured in all, the
	// sweep's run included (the figures are of the runs after it, when
	// there are any: heldOut).
	Runs []int
	// Rounds is how many more runs each was to have.
	Rounds int
	// Stopped is why the re-measure ended before every finalist had its
	// runs ("out of time (--budget 10m0s)"); empty when it did not.
	Stopped string
}

// String says what was re-measured, in a line for the output.
func (m Remeasure) String() string {
	names := layoutNames(m.Layouts)
	if m.Stopped == "" {
		return fmt.Sprintf("re-measured %s (within %.0f%% of the top requests/s) %d more times each, interleaved: their REQ/S, P50 and P99 are medians of those RUNS runs, not counting the sweep's (chosen for being high), and the best is chosen among them",
			strings.Join(names, ", "), FinalBand*100, m.Rounds)
	}
	if !slices.ContainsFunc(m.Runs, func(n int) bool { return n > 1 }) {
		return fmt.Sprintf("not re-measured, %s: %s (within %.0f%% of the top requests/s) ran once each, and the best is chosen among them",
			m.Stopped, strings.Join(names, ", "), FinalBand*100)
	}
	counts := make([]string, len(m.Layouts))
	for i := range m.Layouts {
		counts[i] = fmt.Sprintf("%s %s", names[i], times(m.Runs[i]))
	}
	return fmt.Sprintf("re-measure stopped, %s, before %d more runs each: measured %s in all; their REQ/S, P50 and P99 are medians of the RUNS runs after the sweep's (chosen for being high) where there were any, and the best is chosen among them",
		m.Stopped, m.Rounds, strings.Join(counts, ", "))
}

// times writes a count of runs: "once", "twice", "3 times".
func times(n int) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

// remeasure measures the finalists of the sweep's results Remeasure more
// times each, interleaved (A B C A B C ...) so that a slow minute of a
// shared machine falls on all of them alike, within what is left of the
// budget, and replaces their results with Combine of all their runs. A
// run is started when it would end within the budget by what that layout
// took before.
func (s *sweep) remeasure(ctx, budgetCtx context.Context, r Runner) {
	idx := Finalists(s.report.Results)
	if len(idx) == 0 || s.cfg.Remeasure < 1 {
		return
	}
	m := &Remeasure{Rounds: s.cfg.Remeasure}
	runs := make([][]Result, len(idx))
	for j, i := range idx {
		s.report.Results[i].Finalist = true
		runs[j] = []Result{s.report.Results[i]}
		m.Layouts = append(m.Layouts, s.report.Results[i].Layout)
	}
	s.report.Remeasure = m
	if s.cfg.Log != nil {
		fmt.Fprintf(s.cfg.Log, "tune: within %.0f%% of the top: %s; measuring them %d more times each, interleaved\n",
			FinalBand*100, strings.Join(layoutNames(m.Layouts), ", "), m.Rounds)
	}
	defer func() {
		for j, i := range idx {
			s.report.Results[i] = Combine(heldOut(runs[j]))
			m.Runs = append(m.Runs, len(runs[j]))
		}
	}()
	for round := 1; round <= m.Rounds; round++ {
		for j := range idx {
			prev := runs[j][0]
			load := Load{Clients: prev.Clients, Warmup: s.cfg.Warmup, Duration: s.cfg.Duration}
			if left := s.cfg.Budget - s.now().Sub(s.start); s.cfg.Warmup+s.cfg.Duration+s.overheadOf[prev.Layout] > left {
				m.Stopped = "out of time (--budget " + s.cfg.Budget.String() + ")"
				return
			}
			begun := s.now()
			res, err := r.Run(budgetCtx, prev.Layout, load)
			switch {
			case ctx.Err() != nil:
				s.report.Interrupted = true
				m.Stopped = "interrupted"
				return
			case budgetCtx.Err() != nil:
				m.Stopped = "out of time (--budget " + s.cfg.Budget.String() + "), cut off while measured"
				return
			case err != nil:
				s.report.Err = fmt.Errorf("%s, measured again: %w", prev.Layout, err)
				m.Stopped = "after an error"
				return
			}
			res.Layout, res.Clients, res.Runs, res.Finalist = prev.Layout, prev.Clients, 1, true
			runs[j] = append(runs[j], res)
			s.logResult(res, fmt.Sprintf(" (run %d of %d)", len(runs[j]), 1+m.Rounds))
			s.noteOverhead(prev.Layout, s.now().Sub(begun))
		}
	}
}

// heldOut returns the runs of a finalist that its figures are made of:
// those after the sweep's, when there are any. The sweep's run is the one
// that made it a finalist, chosen for being high, so it leans high: of
// layouts alike, the luckiest run is the one that gets in (the winner's
// curse). Measured on the Flask example, each finalist's sweep run was
// 8-23% above the better of its two runs after it, and the up line tune
// printed delivered 8% less than figures that counted that run.
func heldOut(runs []Result) []Result {
	if len(runs) > 1 {
		return runs[1:]
	}
	return runs
}

func layoutNames(ls []Layout) []string {
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.String()
	}
	return names
}
