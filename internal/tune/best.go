package tune

import (
	"cmp"
	"slices"
)

// closeEnough is how far below the top throughput a layout may be and
// still win on its p99: measurements a few percent apart are within the
// noise of a shared machine, and there the layout that answers sooner is
// the better one.
const closeEnough = 0.05

// BestRule says how Best chooses, for the output.
const BestRule = "best: no errors; among those within 5% of the top requests/s, the lowest p99"

// bestRuleFinals is BestRule where finalists were measured again: only
// they compete, whatever a single run of another layout shows.
const bestRuleFinals = "best: no errors; among the layouts measured again, those within 5% of the top requests/s, the lowest p99"

// RuleFor is the rule Best applied to results, for the line above its
// choice: BestRule, or the same said of the finalists alone.
func RuleFor(results []Result) string {
	if hasFinalists(results) {
		return bestRuleFinals
	}
	return BestRule
}

// clean reports whether r ran without errors and answered.
func clean(r Result) bool { return r.Errors == 0 && r.Requests > 0 }

// hasFinalists reports whether a layout measured again ran clean.
func hasFinalists(results []Result) bool {
	return slices.ContainsFunc(results, func(r Result) bool { return r.Finalist && clean(r) })
}

// Best returns the index in results of the best layout: among those that
// ran without errors, those within closeEnough of the highest throughput,
// the one with the lowest p99 (ties: the higher throughput). When some
// results are finalists, measured again after the sweep, only those
// compete: their figures are medians, and a single run of another layout
// is no match for them, the more so as it fell short of the finalists'
// band (unless every finalist erred when measured again). It returns -1
// when no layout ran without errors.
func Best(results []Result) int {
	finals := hasFinalists(results)
	competes := func(r Result) bool { return clean(r) && (r.Finalist || !finals) }
	top := 0.0
	for _, r := range results {
		if competes(r) {
			top = max(top, r.Throughput())
		}
	}
	best := -1
	for i, r := range results {
		if !competes(r) || r.Throughput() < top*(1-closeEnough) {
			continue
		}
		if best < 0 || r.P99 < results[best].P99 || r.P99 == results[best].P99 && r.Throughput() > results[best].Throughput() {
			best = i
		}
	}
	return best
}

// Ranked returns results best first (Best), then those without errors by
// throughput, highest first, then those with errors, fewest first.
func Ranked(results []Result) []Result {
	out := slices.Clone(results)
	rest := out
	if b := Best(out); b >= 0 {
		out[0], out[b] = out[b], out[0]
		rest = out[1:]
	}
	slices.SortStableFunc(rest, func(x, y Result) int {
		if (x.Errors > 0) != (y.Errors > 0) {
			if x.Errors > 0 {
				return 1
			}
			return -1
		}
		if x.Errors != y.Errors {
			return cmp.Compare(x.Errors, y.Errors)
		}
		return cmp.Compare(y.Throughput(), x.Throughput())
	})
	return out
}
