package tune

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Result is one layout's measurement.
type Result struct {
	Layout  Layout
	Clients int
	Measurement
	// RSS is the replicas' resident memory in all, the most sampled
	// while the load ran.
	RSS uint64
	// Limits are, under Auto, each replica's learned cap when the load
	// ended.
	Limits []int
	// Runs is how many measurements the figures are of: 1 from the
	// sweep, more for a finalist measured again (Combine: medians).
	Runs int
	// Finalist is set on the layouts measured again after the sweep
	// (Finalists); when any result is one, Best chooses among those.
	Finalist bool
}

// Runner runs one layout: it starts its replicas, waits until they are
// ready, drives load at them (Drive), samples their memory, and stops
// them. It returns only once nothing it started runs, whatever happened;
// an error means the layout could not be measured (a replica never became
// ready, say), or ctx ended.
type Runner interface {
	Run(ctx context.Context, l Layout, load Load) (Result, error)
}

// Config is a sweep's candidates and limits.
type Config struct {
	// Shapes are tried in order.
	Shapes []Shape
	// Inflights are the fixed in-flight values tried for each shape,
	// ascending, until one stops paying (Grows); empty means none.
	Inflights []int
	// Auto tries --max-inflight auto for each shape, after the fixed ones.
	Auto bool
	// Warmup and Duration are each layout's load before and while it is
	// measured.
	Warmup, Duration time.Duration
	// Remeasure is how many more times each finalist (Finalists) is
	// measured after the sweep, interleaved, so that the best is chosen
	// on medians rather than on single runs, whose top leans high; zero
	// means none.
	Remeasure int
	// Budget bounds the whole sweep, the re-measure included: a layout
	// that would not end within it is skipped, a re-measure run that
	// would not is not started, and one under way when it ends is cut
	// off.
	Budget time.Duration
	// ClientsPerSlot is how many closed-loop clients a layout gets per
	// replica and in-flight unit, enough that every slot is always busy
	// and a queue waits behind it; zero means 2. Under Auto the in-flight
	// unit is the largest fixed value the shape was measured at (past it
	// throughput stopped rising), else 8.
	ClientsPerSlot int
	// MemAvailable is the memory available before the sweep, in bytes;
	// once a shape has run, the shapes whose replicas would not fit in
	// four fifths of it are skipped. Zero means unknown: none are.
	MemAvailable uint64
	// Log receives a line per layout as the sweep goes; nil means none.
	Log io.Writer
	// Now is the clock; nil means time.Now. Tests pass a fake one that
	// their Runner moves.
	Now func() time.Time
}

// Skip is layouts not measured, and why.
type Skip struct {
	Shape     Shape
	Inflights []int // Auto among them
	Reason    string
}

// String names the layouts and the reason:
// "2x1 inflight 8,16,auto: out of time".
func (s Skip) String() string {
	vals := make([]string, len(s.Inflights))
	for i, n := range s.Inflights {
		vals[i] = Layout{Inflight: n}.InflightString()
	}
	return fmt.Sprintf("%s inflight %s: %s", s.Shape, strings.Join(vals, ","), s.Reason)
}

// Report is what a sweep measured and what it did not.
type Report struct {
	Results []Result
	Skipped []Skip
	// Interrupted is set when the sweep's context ended before it was
	// done (Ctrl-C); Results hold what it had measured.
	Interrupted bool
	// Err is the error that ended the sweep early: a layout that could not
	// be run. Results hold what was measured before it.
	Err error
	// Remeasure is what was measured again after the sweep, or was to be
	// when the budget ran out first; nil when Config.Remeasure is zero,
	// no layout ran without errors, or the sweep was interrupted or
	// failed.
	Remeasure *Remeasure
}

// minGain is how much more throughput a doubled in-flight cap must bring
// for the sweep to try the next one; explodeP99 is how many times its
// predecessor's p99 ends the growth even so: doubling the cap and the
// clients should no more than double the latency.
const (
	minGain    = 0.05
	explodeP99 = 3.0
)

// Grows says whether a shape's in-flight cap should grow past last, best
// being the shape's best result so far before last (nil when last is its
// first), and if not, why. A cap that errs, that does not raise the
// throughput by minGain over the best, or whose p99 passes explodeP99
// times the best's, ends the growth.
func Grows(best *Result, last Result) (bool, string) {
	switch {
	case last.Errors > 0:
		return false, fmt.Sprintf("inflight %s had %d errors", last.Layout.InflightString(), last.Errors)
	case best == nil:
		return true, ""
	case last.Throughput() < best.Throughput()*(1+minGain):
		return false, fmt.Sprintf("inflight %s did not raise requests/s by %.0f%% over inflight %s",
			last.Layout.InflightString(), minGain*100, best.Layout.InflightString())
	case best.P99 > 0 && float64(last.P99) > explodeP99*float64(best.P99):
		return false, fmt.Sprintf("inflight %s's p99 %s is more than %.0fx inflight %s's",
			last.Layout.InflightString(), fmtDuration(last.P99), explodeP99, best.Layout.InflightString())
	}
	return true, ""
}

// Sweep runs the layouts of cfg through r, in order, as the budget
// allows, then measures the finalists again (Config.Remeasure), and
// reports what it measured. It ends early when ctx does
// (Report.Interrupted) or a layout cannot be run (Report.Err).
func Sweep(ctx context.Context, r Runner, cfg Config) Report {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	perSlot := cfg.ClientsPerSlot
	if perSlot == 0 {
		perSlot = 2
	}
	s := &sweep{cfg: cfg, now: now, start: now(), perSlot: perSlot}
	budgetCtx, cancel := context.WithTimeout(ctx, cfg.Budget)
	defer cancel()
	for i, shape := range cfg.Shapes {
		if !s.runShape(ctx, budgetCtx, r, shape) {
			for _, rest := range cfg.Shapes[i+1:] {
				s.skip(rest, s.allInflights(), s.stopReason)
			}
			break
		}
	}
	if !s.report.Interrupted && s.report.Err == nil {
		// Out of time too: the finalists are still chosen among, and the
		// output says they ran once.
		s.remeasure(ctx, budgetCtx, r)
	}
	return s.report
}

// sweep is one Sweep's state.
type sweep struct {
	cfg     Config
	now     func() time.Time
	start   time.Time
	perSlot int
	report  Report
	// overhead is the most a layout took past its load: starting,
	// warming and stopping its replicas; overheadOf is that of each
	// layout run, which a re-measure of it goes by (four replicas of a
	// slow-starting server take much longer than one).
	overhead   time.Duration
	overheadOf map[Layout]time.Duration
	// rssEach is the most memory one replica took, in any layout.
	rssEach uint64
	// stopReason is why the remaining layouts are skipped, once the
	// sweep stops (out of time).
	stopReason string
}

func (s *sweep) allInflights() []int {
	all := append([]int(nil), s.cfg.Inflights...)
	if s.cfg.Auto {
		all = append(all, Auto)
	}
	return all
}

// runShape runs one shape's layouts; it returns false when the sweep
// must stop (out of time, interrupted, failed).
func (s *sweep) runShape(ctx, budgetCtx context.Context, r Runner, shape Shape) bool {
	if s.rssEach > 0 && s.cfg.MemAvailable > 0 && uint64(shape.Replicas)*s.rssEach > s.cfg.MemAvailable/5*4 {
		s.skip(shape, s.allInflights(), fmt.Sprintf("%d replicas of %s each would not fit in four fifths of the %s available",
			shape.Replicas, fmtBytes(s.rssEach), fmtBytes(s.cfg.MemAvailable)))
		return true
	}
	var best *Result
	largest := 0
	todo := s.allInflights()
	for len(todo) > 0 {
		n := todo[0]
		l := Layout{Shape: shape, Inflight: n}
		unit := n
		if n == Auto {
			unit = largest
			if unit == 0 {
				unit = 8
			}
		}
		load := Load{Clients: shape.Replicas * unit * s.perSlot, Warmup: s.cfg.Warmup, Duration: s.cfg.Duration}
		if left := s.cfg.Budget - s.now().Sub(s.start); s.cfg.Warmup+s.cfg.Duration+s.overhead > left {
			s.stopReason = "out of time (--budget " + s.cfg.Budget.String() + ")"
			s.skip(shape, todo, s.stopReason)
			return false
		}
		begun := s.now()
		res, err := r.Run(budgetCtx, l, load)
		switch {
		case ctx.Err() != nil:
			s.report.Interrupted = true
			s.stopReason = "interrupted"
			s.skip(shape, todo, s.stopReason)
			return false
		case budgetCtx.Err() != nil:
			s.stopReason = "out of time (--budget " + s.cfg.Budget.String() + ")"
			s.skip(shape, todo, s.stopReason+", cut off while measured")
			return false
		case err != nil:
			s.report.Err = fmt.Errorf("%s: %w", l, err)
			s.stopReason = "not run after the error"
			s.skip(shape, todo[1:], s.stopReason)
			return false
		}
		todo = todo[1:]
		res.Layout, res.Clients, res.Runs = l, load.Clients, 1
		s.report.Results = append(s.report.Results, res)
		s.logResult(res, "")
		s.noteOverhead(l, s.now().Sub(begun))
		s.rssEach = max(s.rssEach, res.RSS/uint64(shape.Replicas))
		if n == Auto {
			continue
		}
		largest = n
		grows, why := Grows(best, res)
		if best == nil || res.Errors == 0 && res.Throughput() > best.Throughput() {
			b := res
			best = &b
		}
		if !grows {
			var pruned []int
			for _, m := range todo {
				if m != Auto {
					pruned = append(pruned, m)
				}
			}
			if len(pruned) > 0 {
				s.skip(shape, pruned, why)
			}
			todo = todo[len(pruned):]
		}
	}
	return true
}

// noteOverhead records what running l took past its load, which took
// took in all.
func (s *sweep) noteOverhead(l Layout, took time.Duration) {
	over := took - s.cfg.Warmup - s.cfg.Duration
	s.overhead = max(s.overhead, over)
	if s.overheadOf == nil {
		s.overheadOf = map[Layout]time.Duration{}
	}
	s.overheadOf[l] = max(s.overheadOf[l], over)
}

func (s *sweep) skip(shape Shape, inflights []int, reason string) {
	if len(inflights) == 0 {
		return
	}
	s.report.Skipped = append(s.report.Skipped, Skip{Shape: shape, Inflights: inflights, Reason: reason})
}

// logResult logs a measured layout, then suffix.
func (s *sweep) logResult(r Result, suffix string) {
	if s.cfg.Log == nil {
		return
	}
	line := fmt.Sprintf("tune: %-26s %8s req/s  p50 %-7s p99 %-7s rss %-8s errors %d", r.Layout, fmtRate(r.Throughput()),
		fmtDuration(r.P50), fmtDuration(r.P99), fmtBytes(r.RSS), r.Errors)
	if r.FirstFail != "" {
		line += " (first: " + r.FirstFail + ")"
	}
	fmt.Fprintln(s.cfg.Log, line+suffix)
}

// fmtBytes writes a size in binary units: "312MiB".
func fmtBytes(b uint64) string {
	switch {
	case b >= 10<<30:
		return strconv.FormatUint(b>>30, 10) + "GiB"
	case b >= 1<<30:
		return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64) + "GiB"
	case b >= 1<<20:
		return strconv.FormatUint(b>>20, 10) + "MiB"
	case b > 0:
		return strconv.FormatUint(b>>10, 10) + "KiB"
	}
	return "-"
}

// fmtDuration writes a latency to three significant digits: "412ms",
// "1.23s", "850µs".
func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	case d >= 10*time.Millisecond:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	case d > 0:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	}
	return "0"
}
