package tune

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// noisyRunner plays each layout's measurements in turn from a script:
// requests/s of its first run, its second, ..., the last one repeating.
// It moves the clock by the load's time plus over, and calls cancel
// after the run numbered cancelAt.
type noisyRunner struct {
	clock    *time.Time
	over     time.Duration
	overOf   map[string]time.Duration // by layout, instead of over
	rates    map[string][]float64     // by layout
	p99      map[string]time.Duration
	ran      []string
	cancel   func()
	cancelAt int
}

func (n *noisyRunner) Run(ctx context.Context, l Layout, load Load) (Result, error) {
	name := l.String()
	k := 0
	for _, r := range n.ran {
		if r == name {
			k++
		}
	}
	n.ran = append(n.ran, name)
	over, ok := n.overOf[name]
	if !ok {
		over = n.over
	}
	*n.clock = n.clock.Add(load.Warmup + load.Duration + over)
	if n.cancel != nil && len(n.ran) == n.cancelAt {
		n.cancel()
		return Result{}, ctx.Err()
	}
	rs := n.rates[name]
	rate, secs := rs[min(k, len(rs)-1)], load.Duration.Seconds()
	p99 := n.p99[name]
	return Result{Measurement: Measurement{Requests: int(math.Round(rate * secs)), Seconds: secs, P50: p99 / 2, P99: p99}}, nil
}

// lucky is a sweep of 1x1 inflight 1 and 2, and 2x1 inflight 1 and 2,
// where inflight 1 of one replica serves 4.5 requests/s but drew a lucky
// 5.4 on its first run, inflight 2 serves a steady 5.0, and two replicas
// are far behind: measured once each, inflight 1 would win (5.0 is not
// within 5% of 5.4); on medians, inflight 2 does.
func lucky(clock *time.Time) (*noisyRunner, Config) {
	ms := time.Millisecond
	r := &noisyRunner{
		clock: clock, over: 2 * time.Second,
		rates: map[string][]float64{
			"1x1 inflight 1": {5.4, 4.4, 4.5, 4.6},
			"1x1 inflight 2": {5.0, 4.9, 5.1, 5.0},
			"2x1 inflight 1": {3.0},
			"2x1 inflight 2": {3.1},
		},
		p99: map[string]time.Duration{"1x1 inflight 1": 400 * ms, "1x1 inflight 2": 600 * ms, "2x1 inflight 1": 700 * ms, "2x1 inflight 2": 900 * ms},
	}
	cfg := Config{
		Shapes: shapes(1, 2), Inflights: []int{1, 2}, Remeasure: 2,
		Warmup: 5 * time.Second, Duration: 20 * time.Second, Budget: 10 * time.Minute,
		Now: func() time.Time { return *clock },
	}
	return r, cfg
}

// TestRemeasurePicksTheTrulyBest: the finalists are measured again,
// interleaved, and the best rule on their medians picks the layout that
// is truly the fastest, not the one with a lucky first run.
func TestRemeasurePicksTheTrulyBest(t *testing.T) {
	clock := time.Unix(0, 0)
	r, cfg := lucky(&clock)
	cfg.Remeasure = 0
	once := Sweep(context.Background(), r, cfg)
	if b := once.Results[Best(once.Results)]; b.Layout.Inflight != 1 {
		t.Fatalf("measured once, the best is %s; the lucky run should have misled it to inflight 1", b.Layout)
	}

	clock = time.Unix(0, 0)
	r, cfg = lucky(&clock)
	var log strings.Builder
	cfg.Log = &log
	rep := Sweep(context.Background(), r, cfg)
	for _, want := range []string{"tune: within 10% of the top: 1x1 inflight 1, 1x1 inflight 2; measuring them 2 more times each, interleaved\n",
		"tune: 1x1 inflight 2 ", "errors 0 (run 3 of 3)\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	want := []string{"1x1 inflight 1", "1x1 inflight 2", "2x1 inflight 1", "2x1 inflight 2",
		"1x1 inflight 1", "1x1 inflight 2", "1x1 inflight 1", "1x1 inflight 2"}
	if !slices.Equal(r.ran, want) {
		t.Fatalf("ran\n%s\nwant the sweep, then the two finalists interleaved twice:\n%s", strings.Join(r.ran, "\n"), strings.Join(want, "\n"))
	}
	best := rep.Results[Best(rep.Results)]
	if best.Layout.Inflight != 2 || best.Layout.Replicas != 1 {
		t.Errorf("best is %s, want 1x1 inflight 2 (median 5.0 against 4.5)", best.Layout)
	}
	// The figures are of the runs after the sweep's, which chose the
	// finalists for being high: of two, the lower.
	if best.Runs != 2 || math.Abs(best.Throughput()-4.9) > 0.01 {
		t.Errorf("best: %d runs at %.2f/s, want the lower of its 2 later runs, 4.9", best.Runs, best.Throughput())
	}
	if lucky := rep.Results[0]; lucky.Runs != 2 || math.Abs(lucky.Throughput()-4.4) > 0.01 || !lucky.Finalist {
		t.Errorf("the lucky layout: %d runs at %.2f/s, finalist %v; want the lower of its 2 later runs, 4.4", lucky.Runs, lucky.Throughput(), lucky.Finalist)
	}
	if far := rep.Results[2]; far.Runs != 1 || far.Finalist {
		t.Errorf("2x1 inflight 1 (3.0, not within 10%%): %d runs, finalist %v; want once, no finalist", far.Runs, far.Finalist)
	}
	m := rep.Remeasure
	if m == nil || m.Stopped != "" || !slices.Equal(m.Runs, []int{3, 3}) || !strings.Contains(m.String(), "re-measured 1x1 inflight 1, 1x1 inflight 2 (within 10% of the top requests/s) 2 more times each") {
		t.Errorf("remeasure %+v: %v", m, m)
	}
}

// TestRemeasureWithinBudget: runs that would end past the budget are not
// started, whatever the round; the report says who ran how many times.
func TestRemeasureWithinBudget(t *testing.T) {
	clock := time.Unix(0, 0)
	r, cfg := lucky(&clock)
	// Each run takes 5+20+2 = 27s: the sweep's four end at 108s, and
	// 190s leave room for three more (189s), not the fourth.
	cfg.Budget = 190 * time.Second
	rep := Sweep(context.Background(), r, cfg)
	if end := clock.Sub(time.Unix(0, 0)); end > cfg.Budget || len(r.ran) != 7 {
		t.Fatalf("%d runs ending at %s, want 7 within the budget %s", len(r.ran), end, cfg.Budget)
	}
	m := rep.Remeasure
	if m == nil || !slices.Equal(m.Runs, []int{3, 2}) || !strings.HasPrefix(m.Stopped, "out of time (--budget 3m10s)") {
		t.Fatalf("remeasure %+v, want 3 and 2 runs, out of time", m)
	}
	if s := m.String(); !strings.Contains(s, "re-measure stopped, out of time (--budget 3m10s), before 2 more runs each: measured 1x1 inflight 1 3 times, 1x1 inflight 2 twice in all") {
		t.Errorf("remeasure line: %s", s)
	}
	// The medians of what ran after the sweep: 4.4 (4.4, 4.5, the lower
	// of the two) and 4.9 (its one run after the sweep's 5.0).
	if a, b := rep.Results[0], rep.Results[1]; math.Abs(a.Throughput()-4.4) > 0.01 || a.Runs != 2 || math.Abs(b.Throughput()-4.9) > 0.01 || b.Runs != 1 {
		t.Errorf("medians %.2f (%d runs) and %.2f (%d runs), want 4.4 (2) and 4.9 (1)", a.Throughput(), a.Runs, b.Throughput(), b.Runs)
	}
	if best := rep.Results[Best(rep.Results)]; best.Layout.Inflight != 2 {
		t.Errorf("best %s, want 1x1 inflight 2", best.Layout)
	}

	// A budget the sweep alone takes: nothing is measured again, and the
	// finalists are still the ones whose single runs decide.
	clock = time.Unix(0, 0)
	r, cfg = lucky(&clock)
	cfg.Budget = 120 * time.Second
	rep = Sweep(context.Background(), r, cfg)
	if len(r.ran) != 4 || rep.Remeasure == nil || !slices.Equal(rep.Remeasure.Runs, []int{1, 1}) ||
		rep.Remeasure.String() != "not re-measured, out of time (--budget 2m0s): 1x1 inflight 1, 1x1 inflight 2 (within 10% of the top requests/s) ran once each, and the best is chosen among them" {
		t.Errorf("%d runs, remeasure %+v (%v); want the sweep's 4 and none again", len(r.ran), rep.Remeasure, rep.Remeasure)
	}
}

// TestRemeasureInterrupted: Ctrl-C during the re-measure keeps what was
// measured, its medians, and says so.
func TestRemeasureInterrupted(t *testing.T) {
	clock := time.Unix(0, 0)
	r, cfg := lucky(&clock)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.cancel, r.cancelAt = cancel, 6
	rep := Sweep(ctx, r, cfg)
	if !rep.Interrupted || rep.Err != nil || rep.Remeasure == nil || rep.Remeasure.Stopped != "interrupted" || !slices.Equal(rep.Remeasure.Runs, []int{2, 1}) {
		t.Errorf("interrupted %v, err %v, remeasure %+v; want interrupted after 1x1 inflight 1's second run", rep.Interrupted, rep.Err, rep.Remeasure)
	}
}

func TestFinalists(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name    string
		results []Result
		want    []int
	}{
		{"none", nil, nil},
		{"all err", []Result{result(1, 10, ms, 1)}, nil},
		{"within 10%", []Result{result(1, 80, ms, 0), result(2, 91, ms, 0), result(4, 100, ms, 0), result(8, 89, ms, 0)}, []int{1, 2}},
		{"errors out", []Result{result(1, 95, ms, 0), result(2, 100, ms, 2), result(4, 90, ms, 0)}, []int{0, 2}},
		{"at most 3, the fastest", []Result{result(1, 96, ms, 0), result(2, 97, ms, 0), result(4, 100, ms, 0), result(8, 99, ms, 0)}, []int{1, 2, 3}},
	} {
		if got := Finalists(c.results); !slices.Equal(got, c.want) {
			t.Errorf("%s: Finalists = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCombine(t *testing.T) {
	ms := time.Millisecond
	a, b, c, d := result(4, 10, 100*ms, 0), result(4, 12, 300*ms, 0), result(4, 11, 200*ms, 1), result(4, 9, 400*ms, 0)
	a.RSS, b.RSS, c.RSS, d.RSS = 1, 5, 2, 3
	c.FirstFail = "answered 502 Bad Gateway"
	got := Combine([]Result{a, b, c})
	if got.Throughput() != 11 || got.P99 != 200*ms || got.P50 != 100*ms || got.Errors != 1 || got.RSS != 5 || got.Runs != 3 || got.FirstFail == "" {
		t.Errorf("Combine of 3: %.1f/s p99 %s p50 %s errors %d rss %d runs %d", got.Throughput(), got.P99, got.P50, got.Errors, got.RSS, got.Runs)
	}
	// Of the middle two, the worse: the lower rate, the higher latency.
	got = Combine([]Result{a, b, c, d})
	if got.Throughput() != 10 || got.P99 != 300*ms || got.Runs != 4 {
		t.Errorf("Combine of 4: %.1f/s p99 %s runs %d, want 10/s and 300ms", got.Throughput(), got.P99, got.Runs)
	}
	if got := Combine([]Result{b}); got.Throughput() != 12 || got.P99 != 300*ms || got.Runs != 1 {
		t.Errorf("Combine of 1: %+v", got)
	}
}

// TestBestAmongFinalists: once there are finalists, a single run of
// another layout does not beat their medians; if every finalist erred
// when measured again, the rest compete.
func TestBestAmongFinalists(t *testing.T) {
	ms := time.Millisecond
	fin := func(r Result) Result { r.Finalist, r.Runs = true, 3; return r }
	rs := []Result{fin(result(1, 90, 200*ms, 0)), result(2, 100, 100*ms, 0), fin(result(4, 88, 300*ms, 0))}
	if got := Best(rs); got != 0 {
		t.Errorf("Best = %d, want 0: the finalists' medians, not another's single run", got)
	}
	rs[0].Errors, rs[2].Errors = 1, 2
	if got := Best(rs); got != 1 {
		t.Errorf("Best = %d with every finalist erring, want 1", got)
	}
}

// TestRemeasureAfterTheSweepRanOutOfTime: a sweep cut short by the budget
// still names its finalists, measured once, and chooses among them.
func TestRemeasureAfterTheSweepRanOutOfTime(t *testing.T) {
	clock := time.Unix(0, 0)
	r, cfg := lucky(&clock)
	cfg.Budget = 60 * time.Second // two layouts of 27s
	rep := Sweep(context.Background(), r, cfg)
	if len(r.ran) != 2 || len(rep.Skipped) == 0 || rep.Remeasure == nil || !strings.HasPrefix(rep.Remeasure.Stopped, "out of time") ||
		!slices.Equal(rep.Remeasure.Runs, []int{1, 1}) {
		t.Fatalf("%d runs, skipped %v, remeasure %+v; want 2 runs, the rest skipped, the finalists measured once", len(r.ran), rep.Skipped, rep.Remeasure)
	}
	if !rep.Results[0].Finalist || !rep.Results[1].Finalist {
		t.Errorf("finalists not marked: %+v", rep.Results)
	}
}

// TestRemeasureGoesByTheLayoutsOwnTime: a finalist is measured again when
// its own past run would fit in what is left, though a slower-starting
// layout of the sweep would not.
func TestRemeasureGoesByTheLayoutsOwnTime(t *testing.T) {
	clock := time.Unix(0, 0)
	r, cfg := lucky(&clock)
	r.overOf = map[string]time.Duration{"2x1 inflight 1": time.Minute, "2x1 inflight 2": time.Minute}
	// The sweep: 27+27+85+85 = 224s; 56s are left, two runs of 27s.
	cfg.Budget = 280 * time.Second
	rep := Sweep(context.Background(), r, cfg)
	if rep.Remeasure == nil || !slices.Equal(rep.Remeasure.Runs, []int{2, 2}) || clock.Sub(time.Unix(0, 0)) > cfg.Budget {
		t.Errorf("remeasure %+v, ended at %s; want each finalist run once more within %s", rep.Remeasure, clock.Sub(time.Unix(0, 0)), cfg.Budget)
	}
}

// TestRuleForSaysWhoCompeted: once finalists were measured again, the
// line above the choice says that only they competed, since a layout
// measured once can sit within 5% of the top with a lower p99 and lose.
func TestRuleForSaysWhoCompeted(t *testing.T) {
	once := Result{Measurement: Measurement{Requests: 100}}
	again := Result{Measurement: Measurement{Requests: 100}, Finalist: true}
	if got := RuleFor([]Result{once}); got != BestRule {
		t.Errorf("no finalist: %q", got)
	}
	if got := RuleFor([]Result{once, again}); got == BestRule || !strings.Contains(got, "among the layouts measured again") {
		t.Errorf("with a finalist: %q", got)
	}
	if got := RuleFor([]Result{once, {Measurement: Measurement{Requests: 100, Errors: 1}, Finalist: true}}); got != BestRule {
		t.Errorf("a finalist that erred competes with no one: %q", got)
	}
}
